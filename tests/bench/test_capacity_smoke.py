"""The capacity benches run end to end and print their figures (no timing checked):
max_idle.py (one process full of idle connections) and gc_pause.py (latency under churn)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from .kit import load_bench

BENCH = Path(__file__).resolve().parents[2] / "bench"
NUMBER = r"[\d,]+(?:\.\d+)?"


def _run(script: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quick_max_idle_prints_cost_per_connection_and_the_projection() -> None:
    run = _run("max_idle.py", "--quick", timeout=280)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert re.search(r"^idle connections in one corral process: 2,000 held ", out, re.M), out
    assert re.search(rf"^RSS: .* MiB with them: {NUMBER} KB per connection$", out, re.M), out
    assert re.search(rf"^opening: .* server CPU .*: {NUMBER} us per connection ", out, re.M)
    assert re.search(rf"^idle: server CPU .*: {NUMBER} us per connection per second$", out, re.M)
    assert re.search(
        rf"^projection to 100,000 per process: RSS {NUMBER} MiB, opening CPU {NUMBER} s, "
        rf"idle CPU {NUMBER}% of a core; needs an open-files limit of {NUMBER}$",
        out,
        re.M,
    ), out
    assert re.search(r"^all 2,000 connections upgraded and still open at the end$", out, re.M)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quick_gc_pause_prints_latency_percentiles_for_both_servers() -> None:
    run = _run("gc_pause.py", "--quick", timeout=280)
    assert run.returncode == 0, run.stderr
    for server in ("corral", "websockets"):
        row = rf"^{server}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+900\s+{NUMBER}$"
        assert re.search(row, run.stdout, re.M), run.stdout
    assert re.search(
        rf"^corral p99 {NUMBER} ms \(p50 {NUMBER}\) target < 50 ms (PASS|MISS); every close",
        run.stdout,
        re.M,
    ), run.stdout


def test_holders_each_get_their_own_source_address_and_at_most_5000() -> None:
    bench = load_bench(BENCH / "max_idle.py")
    holders = bench._sources(19_968)
    assert [args[1] for args in holders] == ["4992"] * 4
    assert [args[3] for args in holders] == ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]


def test_a_stall_shows_in_p99_and_max_not_in_p50() -> None:
    bench = load_bench(BENCH / "gc_pause.py")
    run = bench.Churn("corral", tuple([0.001] * 99 + [0.5]), 9, 9, 0.1)
    assert run.percentile(0.5) == 0.001
    assert run.percentile(0.99) == 0.5
