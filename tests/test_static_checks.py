"""The code base stays typed (mypy --strict) and lint-clean (ruff), checked like any test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_mypy_strict_passes_on_actors_and_server() -> None:
    result = _run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_finds_nothing_in_the_code_base() -> None:
    result = _run("ruff", "check", "actors", "server", "examples", "bench", "tests")
    assert result.returncode == 0, result.stdout + result.stderr
