"""The code base stays typed (mypy --strict) and lint-clean (ruff), checked like any test."""

from __future__ import annotations

import re
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


def test_mypy_strict_passes_on_the_examples_and_the_test_kit() -> None:
    result = _run("mypy", "--strict", "examples", "server/testing")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_rejects_each_state_type_mistake_and_nothing_else() -> None:
    path = "tests/typecheck/wrong_state.py"
    marked = {
        (number, code)
        for number, line in enumerate((ROOT / path).read_text().splitlines(), start=1)
        for code in re.findall(r"# rejected: \[([a-z-]+)\]", line)
    }
    assert len(marked) == 8, marked  # the file still holds every mistake
    result = _run("mypy", "--strict", path)
    reported = {
        (int(number), code)
        for number, code in re.findall(
            r"wrong_state\.py:(\d+): error: .*\[([a-z-]+)\]$", result.stdout, re.MULTILINE
        )
    }
    assert reported == marked, result.stdout + result.stderr


def test_ruff_finds_nothing_in_the_code_base() -> None:
    result = _run("ruff", "check", "actors", "server", "examples", "bench", "tests")
    assert result.returncode == 0, result.stdout + result.stderr
