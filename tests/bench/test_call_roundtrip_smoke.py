"""bench/call_roundtrip.py runs and prints call against the hand-rolled pair, with a verdict."""

from __future__ import annotations

from .kit import NUMBER, assert_printed, run_bench


def test_quick_run_prints_each_round_and_the_median_ratio() -> None:
    run = run_bench("call_roundtrip.py", "--count", "200", "--rounds", "2", timeout=60)
    assert_printed(
        run,
        rf"round 1: send\+receive {NUMBER} µs CPU, call {NUMBER} µs CPU \({NUMBER}x\)",
        rf"call / send\+receive, median of 2: {NUMBER}x \(target <= 1.5x\) (MET|MISS)",
    )
