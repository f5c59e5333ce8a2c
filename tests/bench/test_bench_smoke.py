"""The actor throughput benchmark runs, prints both ratios and loses nothing; no timing checked."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from .kit import load_bench

BENCH = Path(__file__).resolve().parents[2] / "bench" / "actors_throughput.py"
RATIO_ROW = r"^{name} \(.*\)\s+[\d,]+\s+[\d,]+\s+\d+\.\d\dx\s.*\s(PASS|MISS)$"


def _load_bench() -> ModuleType:
    return load_bench(BENCH)


def test_quick_run_prints_both_ratios_and_loses_no_message() -> None:
    run = subprocess.run(
        [sys.executable, str(BENCH), "--quick"],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    for name in ("one-way", "ping-pong"):
        assert re.search(RATIO_ROW.format(name=name), run.stdout, re.MULTILINE), run.stdout
    assert re.search(r"^delivered: every message, in order, .*; 0 lost$", run.stdout, re.M)


def test_a_lost_message_fails_the_run() -> None:
    bench = _load_bench()
    tally = bench.Tally()
    for msg in (0, 1, 3):
        tally.see(msg)
    with pytest.raises(bench.LostMessage, match="2 of 4 messages in order, 1 out of order"):
        tally.check("one-way", 4)


def test_a_complete_ordered_delivery_passes_the_check() -> None:
    bench = _load_bench()
    tally = bench.Tally()
    for msg in range(4):
        tally.see(msg)
    tally.check("one-way", 4)
