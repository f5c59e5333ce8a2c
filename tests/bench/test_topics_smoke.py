"""The topics benchmark runs end to end (cost, resume, a small storm) and every client
resumes; no timing is checked."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "topics.py"


def test_quick_run_prints_the_three_figures() -> None:
    run = subprocess.run(
        [sys.executable, str(BENCH), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"in process: broadcast [\d.]+ us, post [\d.]+ us: .* [\d.]+x", run.stdout)
    assert re.search(r"in process: p50 [\d.]+ ms, p99 [\d.]+ ms", run.stdout)
    assert re.search(r"^storm: 200 clients resume 100 posts at once: all in", run.stdout, re.M)
