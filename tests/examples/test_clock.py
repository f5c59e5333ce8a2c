"""The clock example over real WebSockets: ticks with seq on time, and none after stop.

Most tests run on trio's MockClock with autojump (``virtual_clock``): waiting a virtual minute
for a tick that must not come takes no real time, while the bytes still cross real sockets.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from examples.clock import app
from tests.examples.kit import Client, connect
from tests.server.serving import serving


async def start(clock: Client, every: float) -> float:
    """Start the ticker; return the (virtual) time the start was sent."""
    sent_at = trio.current_time()
    await clock.send(type="start", every=every)
    assert await clock.receive() == {"type": "started", "every": every}
    return sent_at


async def test_ticks_count_from_one_and_arrive_every_period(virtual_clock: Any) -> None:
    async with serving(app) as server, connect(server, "/") as clock:
        sent_at = await start(clock, 2.0)
        for seq in range(1, 6):
            assert await clock.receive() == {"type": "tick", "seq": seq}
            assert trio.current_time() - sent_at == pytest.approx(2.0 * seq, abs=0.05)


async def test_ticks_do_not_drift_over_two_hundred_periods(virtual_clock: Any) -> None:
    async with serving(app) as server, connect(server, "/") as clock:
        sent_at = await start(clock, 0.5)
        for seq in range(1, 201):
            assert await clock.receive() == {"type": "tick", "seq": seq}
        assert trio.current_time() - sent_at == pytest.approx(100.0, abs=0.05)


async def test_after_stop_no_tick_ever_arrives(virtual_clock: Any) -> None:
    async with serving(app) as server, connect(server, "/") as clock:
        await start(clock, 0.01)
        for seq in range(1, 4):
            assert await clock.receive() == {"type": "tick", "seq": seq}
        await clock.send(type="stop")
        last = 3
        while (message := await clock.receive())["type"] == "tick":  # sent before the stop
            last += 1
            assert message["seq"] == last
        assert message == {"type": "stopped", "seq": last}
        await clock.nothing_more(seconds=60.0)


async def test_stop_right_after_start_sends_no_tick(virtual_clock: Any) -> None:
    async with serving(app) as server, connect(server, "/") as clock:
        for _ in range(20):
            await clock.send(type="start", every=0.01)
            await clock.send(type="stop")
            assert await clock.receive() == {"type": "started", "every": 0.01}
            assert await clock.receive() == {"type": "stopped", "seq": 0}
        await clock.nothing_more(seconds=10.0)


async def test_start_again_replaces_the_ticker(virtual_clock: Any) -> None:
    async with serving(app) as server, connect(server, "/") as clock:
        await start(clock, 1.0)
        assert await clock.receive() == {"type": "tick", "seq": 1}
        sent_at = await start(clock, 3.0)
        assert await clock.receive() == {"type": "tick", "seq": 1}
        assert trio.current_time() - sent_at == pytest.approx(3.0, abs=0.05)
        assert await clock.receive() == {"type": "tick", "seq": 2}
        assert trio.current_time() - sent_at == pytest.approx(6.0, abs=0.05)


async def test_stop_without_a_ticker_just_answers_stopped(virtual_clock: Any) -> None:
    async with serving(app) as server, connect(server, "/") as clock:
        await clock.send(type="stop")
        assert await clock.receive() == {"type": "stopped", "seq": 0}
        await clock.nothing_more(seconds=5.0)


@pytest.mark.parametrize(
    "every",
    ["1", True, None, 0.001, 0, -1, 3600.5, 10**400, [1]],
    ids=["string", "bool", "null", "too-short", "zero", "negative", "too-long", "huge", "list"],
)
async def test_a_bad_period_is_refused_and_starts_nothing(virtual_clock: Any, every: Any) -> None:
    async with serving(app) as server, connect(server, "/") as clock:
        await clock.send(type="start", every=every)
        error = await clock.receive()
        assert error["type"] == "error" and '"every"' in error["reason"]
        await clock.nothing_more(seconds=5.0)


@pytest.mark.parametrize("frame", ['{"type": "start", "every": NaN}', '{"type": "start"}'])
async def test_nan_or_missing_period_is_refused(virtual_clock: Any, frame: str) -> None:
    async with serving(app) as server, connect(server, "/") as clock:
        await clock.send_raw(frame)
        assert (await clock.receive())["type"] == "error"
        await clock.nothing_more(seconds=5.0)


@pytest.mark.parametrize("frame", ["not json", "[]", '{"type": "pause"}', b"\x00binary"], ids=str)
async def test_bad_input_gets_an_error_and_the_ticker_runs_on(
    virtual_clock: Any, frame: str | bytes
) -> None:
    async with serving(app) as server, connect(server, "/") as clock:
        await start(clock, 1.0)
        await clock.send_raw(frame)
        assert (await clock.receive())["type"] == "error"
        assert await clock.receive() == {"type": "tick", "seq": 1}


async def test_the_bounds_themselves_are_accepted(virtual_clock: Any) -> None:
    async with serving(app) as server, connect(server, "/") as clock:
        await start(clock, 0.01)
        assert await clock.receive() == {"type": "tick", "seq": 1}
        sent_at = await start(clock, 3600)
        await clock.nothing_more(seconds=3599.0)
        assert await clock.receive() == {"type": "tick", "seq": 1}
        assert trio.current_time() - sent_at == pytest.approx(3600.0, abs=0.05)


async def test_ticks_and_stop_on_the_real_clock() -> None:
    async with serving(app) as server, connect(server, "/") as clock:
        with trio.fail_after(5):
            await start(clock, 0.02)
            for seq in range(1, 4):
                assert await clock.receive() == {"type": "tick", "seq": seq}
            await clock.send(type="stop")
            while (message := await clock.receive())["type"] == "tick":
                pass
            assert message["type"] == "stopped"
            await clock.nothing_more(seconds=0.3)
