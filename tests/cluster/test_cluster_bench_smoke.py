"""The cluster benchmarks run and print their figures; no timing is checked (smoke runs)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _run(script: str, *args: str) -> str:
    run = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=BENCH.parent,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


@pytest.mark.slow
def test_echo_quick_run_prints_both_ratios_and_the_clients_cpu() -> None:
    out = _run("cluster_load.py", "echo", "--quick")
    assert re.search(r"round trips/s 2/1: \d+\.\d\dx .*(PASS|MISS)", out), out
    assert re.search(r"CPU per round trip 2/1: \d+\.\d\dx .*(PASS|MISS)", out), out
    # (a quick round's server CPU may read 0 on psutil's 10 ms tick: the share is then inf)
    assert re.search(r"client CPU at most (\d+\.\d\d|inf)x the server's", out), out


@pytest.mark.slow
def test_fanout_quick_run_loses_nothing(redis_url: str) -> None:
    out = _run("cluster_load.py", "fanout", "--quick", "--redis", redis_url)
    assert re.search(r"lost 0 \(target 0: PASS\)", out), out
    assert re.search(r"p99 with 2 workers [\d.]+ ms", out), out
    assert re.search(r"client CPU at most (\d+\.\d\d|inf)x the server's", out), out


def test_latency_run_reports_same_and_cross_node(redis_url: str) -> None:
    out = _run("cluster_nodes.py", "latency", "--redis", redis_url, "--count", "50")
    assert re.search(r"^same node\s+[\d.]+\s+[\d.]+$", out, re.MULTILINE), out
    assert re.search(r"^cross node\s+[\d.]+\s+[\d.]+$", out, re.MULTILINE), out


@pytest.mark.slow
def test_restart_run_counts_every_lost_message() -> None:
    out = _run("cluster_nodes.py", "restart")
    assert "lost without being counted 0" in out, out
    assert re.search(r"resubscribed after Redis was back: node a \d+ ms", out), out


@pytest.mark.slow
def test_capacity_quick_run_loses_nothing_and_prints_memory_per_connection(
    redis_url: str,
) -> None:
    out = _run("cluster_capacity.py", "--quick", "--redis", redis_url)
    assert re.search(r"KiB per connection", out), out
    assert re.search(r"broadcast to all: 2,000 of 2,000 delivered", out), out
    assert "lost 0 of 8,000 (target 0: PASS)" in out, out


@pytest.mark.slow
def test_failover_run_counts_every_lost_message() -> None:
    out = _run("cluster_nodes.py", "failover")
    assert "lost without being counted 0" in out, out
    assert re.search(r"subscribed again after the link broke: node a \d+ ms", out), out


def test_presence_run_prints_joins_delta_bytes_and_convergence(redis_url: str) -> None:
    out = _run(
        "presence_cluster.py",
        "--presences",
        "400",
        "--redis",
        redis_url,
        "--failure-detection",
        "2",
    )
    rate = r"(?:[\d,]+|-)"  # "-": a quick run whose CPU clock read 0
    assert re.search(rf"^n1\s+{rate}\s+{rate}\s+[\d.]+\s+{rate}\s+1\s+[\d.]+ s$", out, re.M), out
    assert re.search(r"^members 400\s+1000\s+[\d,]+\s+[\d,]+", out, re.MULTILINE), out
    assert re.search(r"listed only live presences after [\d.]+ s", out), out
