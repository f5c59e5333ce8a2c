"""Giving memory back after a burst of connections: when to trim (pure), and a served trim."""

from __future__ import annotations

import pytest
import trio

from examples.echo import app as echo_app
from server import App, ServerOptions
from server.memory import MALLOC_TRIM, TrimPolicy, TrimSchedule
from server.serve import Server

from .serving import WAIT, assert_echoes, running, tcp_client

POLICY = TrimPolicy(min_burst=100, low_fraction=0.25, quiet_accepts=10)


def schedule() -> TrimSchedule:
    return TrimSchedule(POLICY)


def test_no_trim_before_a_burst_of_min_burst_connections() -> None:
    plan = schedule()
    assert not plan.observe(accepted=99, open_now=99)
    assert not plan.observe(accepted=99, open_now=0)


def test_trim_once_a_burst_has_closed_and_gone_quiet() -> None:
    plan = schedule()
    assert not plan.observe(accepted=500, open_now=500)  # still open
    assert plan.observe(accepted=500, open_now=0)


def test_no_trim_while_connections_still_pour_in() -> None:
    plan = schedule()
    assert not plan.observe(accepted=1000, open_now=2)  # a connect-and-reset flood
    assert not plan.observe(accepted=2000, open_now=3)
    assert plan.observe(accepted=2005, open_now=0)  # it stopped


def test_no_trim_while_most_of_the_peak_is_still_open() -> None:
    plan = schedule()
    assert not plan.observe(accepted=1000, open_now=1000)
    assert not plan.observe(accepted=1000, open_now=251)
    assert plan.observe(accepted=1000, open_now=250)


def test_a_trim_starts_the_next_burst() -> None:
    plan = schedule()
    plan.observe(accepted=300, open_now=300)
    assert plan.observe(accepted=300, open_now=0)
    assert not plan.observe(accepted=300, open_now=0)  # nothing new since
    assert not plan.observe(accepted=399, open_now=0)  # 99 since the trim
    assert not plan.observe(accepted=520, open_now=0)  # 220, but 121 of them just now
    assert plan.observe(accepted=520, open_now=0)


def test_steady_long_lived_connections_never_trim() -> None:
    plan = schedule()
    for accepted in range(1000, 5000, 5):
        assert not plan.observe(accepted=accepted, open_now=1000)


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
        await assert_echoes(served.url("/"))  # a trim leaves the server serving
