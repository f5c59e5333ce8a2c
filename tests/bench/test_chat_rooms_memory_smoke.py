"""The chat rooms memory benchmark runs end to end on a few rooms and prints its figures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "chat_rooms_memory.py"


def test_the_chat_rooms_memory_bench_prints_rss_before_and_after() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH), "--rooms", "5", "--says", "2", "--size", "100"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "joins that filled a room: 5, refused: 0" in result.stdout, lines
    assert any(line.strip().startswith("RSS idle:") for line in lines), lines
    assert any(line.strip().startswith("RSS after churn:") for line in lines), lines
