"""The capacity benches' pure parts: how max_idle.py spreads its clients, how gc_pause.py
reads a stall (their quick runs are in test_quick_runs.py)."""

from __future__ import annotations

from .kit import BENCH, load_bench


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
