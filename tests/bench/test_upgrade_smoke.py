"""bench/upgrade.py runs end to end on a few connections and prints its figures."""

from __future__ import annotations

from .kit import NUMBER, assert_printed, run_bench


def test_a_small_upgrade_under_load_closes_nothing_and_loses_nothing() -> None:
    run = run_bench(
        "upgrade.py", "--connections", "40", "--before", "1.5", "--after", "1.5", timeout=120
    )
    assert_printed(
        run,
        r"upgrade under load: 40 connections, a tick every 0.5 s each",
        r"server: upgraded to generation 1: .*",
        rf"frames received {NUMBER}; sockets closed 0; messages lost 0; states broken 0",
        rf"time until every live connection ran the new code: {NUMBER} ms \(median {NUMBER} ms\);"
        r" still on old code: 0",
        rf"prober p99 round trip: {NUMBER} ms before, {NUMBER} ms from the upgrade on "
        rf"\(\+-?{NUMBER} ms, target < 50\) (MET|MISS)",
        rf"CPU from the prober's start on: server {NUMBER} s, clients {NUMBER} s",
        r"zero sockets closed, zero messages lost, every connection moved: MET",
    )
