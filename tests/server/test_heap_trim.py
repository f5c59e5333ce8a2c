"""Giving memory back after a burst of connections: when to trim (pure), and a served trim."""

from __future__ import annotations

import pytest
import trio

from examples.echo import app as echo_app
from server import App, ServerOptions
from server.ops.heap_trim import MALLOC_TRIM, TrimPolicy, TrimSchedule
from server.run.supervised import Server

from .kit import WAIT, assert_echoes, running, tcp_client

POLICY = TrimPolicy(min_burst=100, min_growth=1000, low_fraction=0.25, quiet_accepts=10)
RSS = 50_000
"""A resident size that does not change, for the tests of the connection counts."""


def schedule() -> TrimSchedule:
    return TrimSchedule(POLICY)


def test_no_trim_before_a_burst_of_min_burst_connections() -> None:
    plan = schedule()
    assert not plan.observe(99, 99, RSS)
    assert not plan.observe(99, 0, RSS)


def test_trim_once_a_burst_has_closed_and_gone_quiet() -> None:
    plan = schedule()
    assert not plan.observe(500, 500, RSS)  # still open
    assert plan.observe(500, 0, RSS)


def test_no_trim_while_connections_still_pour_in() -> None:
    plan = schedule()
    assert not plan.observe(1000, 2, RSS)  # a connect-and-reset flood
    assert not plan.observe(2000, 3, RSS)
    assert plan.observe(2005, 0, RSS)  # it stopped


def test_no_trim_while_most_of_the_peak_is_still_open() -> None:
    plan = schedule()
    assert not plan.observe(1000, 1000, RSS)
    assert not plan.observe(1000, 251, RSS)
    assert plan.observe(1000, 250, RSS)


def test_a_trim_starts_the_next_burst() -> None:
    plan = schedule()
    plan.observe(300, 300, RSS)
    assert plan.observe(300, 0, RSS)
    assert not plan.observe(300, 0, RSS)  # nothing new since
    assert not plan.observe(399, 0, RSS)  # 99 since the trim
    assert not plan.observe(520, 0, RSS)  # 220, but 121 of them just now
    assert plan.observe(520, 0, RSS)


def test_steady_long_lived_connections_never_trim() -> None:
    plan = schedule()
    for accepted in range(1000, 5000, 5):
        assert not plan.observe(accepted, 1000, RSS)


def test_trim_once_the_rss_has_grown_and_the_few_connections_left() -> None:
    plan = schedule()
    assert not plan.observe(1, 1, RSS)  # a ping flood on one connection
    assert not plan.observe(1, 1, RSS + 5000)  # still connected
    assert plan.observe(1, 0, RSS + 5000)


def test_growth_counts_from_the_rss_after_the_last_trim() -> None:
    plan = schedule()
    plan.observe(1, 1, RSS)
    assert plan.observe(1, 0, RSS + 5000)
    plan.trimmed(RSS + 500)  # the trim gave back most of it
    assert not plan.observe(2, 0, RSS + 1499)
    assert plan.observe(2, 0, RSS + 1500)


def test_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="min_burst"):
        TrimPolicy(min_burst=0)
    with pytest.raises(ValueError, match="interval"):
        TrimPolicy(interval=0)


def test_memory_trim_off_means_no_trimmer() -> None:
    app = App([])
    assert Server(app, options=ServerOptions(memory_trim=None)).memory_trimmer is None


@pytest.mark.skipif(MALLOC_TRIM is None, reason="malloc_trim is glibc's; this C library has none")
async def test_trim_runs_after_a_burst_of_connections_closes() -> None:
    options = ServerOptions(memory_trim=TrimPolicy(min_burst=60, quiet_accepts=0, interval=0.02))
    async with running(echo_app, options) as served:
        trimmer = served.server.memory_trimmer
        assert trimmer is not None and not trimmer.trims
        trimmed = trimmer.trimmed
        async with trio.open_nursery() as nursery:
            opened = trio.Semaphore(0)

            async def hold(done: trio.Event) -> None:
                async with tcp_client(served.port):
                    opened.release()
                    await done.wait()

            done = trio.Event()
            for _ in range(60):
                nursery.start_soon(hold, done)
            with trio.fail_after(WAIT):
                for _ in range(60):
                    await opened.acquire()
                while served.connections() < 60:
                    await trio.sleep(0.01)
            done.set()
        with trio.fail_after(WAIT):
            await trimmed.wait()
        (trim,) = trimmer.trims
        assert trim.rss_before > 0 and trim.rss_after > 0
        await assert_echoes(served.url("/"))  # a trim leaves the server running_clean
