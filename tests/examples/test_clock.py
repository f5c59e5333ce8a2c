"""The clock example: ticks with seq on time, and none after stop.

Most tests drive the handler in process with the test kit (``server.testing.drive``) on
pytest-trio's autojump clock: waiting a virtual minute for a tick that must not come takes no
real time. The last one runs the app over a real socket on the real clock.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
import trio

from examples.clock import OPTIONS, Clock, app
from server.testing import Driven, connect, drive


def clock_connection() -> AbstractAsyncContextManager[Driven]:
    """A Clock connection driven in process, with the route's options (pings every 30 s)."""
    return drive(Clock(), options=OPTIONS)


async def start(clock: Driven, every: float) -> float:
    """Start the ticker; return the (virtual) time the start was sent."""
    sent_at = trio.current_time()
    await clock.send_json({"type": "start", "every": every})
    assert await clock.receive_json() == {"type": "started", "every": every}
    return sent_at


async def send_as_is(clock: Driven, frame: str | bytes) -> None:
    """Send a text (str) or binary (bytes) frame, bad input included."""
    await (clock.send_text(frame) if isinstance(frame, str) else clock.send_binary(frame))


async def test_ticks_count_from_one_and_arrive_every_period(autojump_clock: Any) -> None:
    async with clock_connection() as clock:
        sent_at = await start(clock, 2.0)
        for seq in range(1, 6):
            assert await clock.receive_json() == {"type": "tick", "seq": seq}
            assert trio.current_time() - sent_at == pytest.approx(2.0 * seq, abs=0.05)


async def test_ticks_do_not_drift_over_two_hundred_periods(autojump_clock: Any) -> None:
    async with clock_connection() as clock:
        sent_at = await start(clock, 0.5)
        for seq in range(1, 201):
            assert await clock.receive_json() == {"type": "tick", "seq": seq}
        assert trio.current_time() - sent_at == pytest.approx(100.0, abs=0.05)


async def test_after_stop_no_tick_ever_arrives(autojump_clock: Any) -> None:
    async with clock_connection() as clock:
        await start(clock, 0.01)
        for seq in range(1, 4):
            assert await clock.receive_json() == {"type": "tick", "seq": seq}
        await clock.send_json({"type": "stop"})
        last = 3
        while (message := await clock.receive_json())["type"] == "tick":  # sent before the stop
            last += 1
            assert message["seq"] == last
        assert message == {"type": "stopped", "seq": last}
        await clock.refute_push(timeout=60.0)


async def test_stop_right_after_start_sends_no_tick(autojump_clock: Any) -> None:
    async with clock_connection() as clock:
        for _ in range(20):
            await clock.send_json({"type": "start", "every": 0.01})
            await clock.send_json({"type": "stop"})
            assert await clock.receive_json() == {"type": "started", "every": 0.01}
            assert await clock.receive_json() == {"type": "stopped", "seq": 0}
        await clock.refute_push(timeout=10.0)


async def test_start_again_replaces_the_ticker(autojump_clock: Any) -> None:
    async with clock_connection() as clock:
        await start(clock, 1.0)
        assert await clock.receive_json() == {"type": "tick", "seq": 1}
        sent_at = await start(clock, 3.0)
        assert await clock.receive_json() == {"type": "tick", "seq": 1}
        assert trio.current_time() - sent_at == pytest.approx(3.0, abs=0.05)
        assert await clock.receive_json() == {"type": "tick", "seq": 2}
        assert trio.current_time() - sent_at == pytest.approx(6.0, abs=0.05)


async def test_stop_without_a_ticker_just_answers_stopped(autojump_clock: Any) -> None:
    async with clock_connection() as clock:
        await clock.send_json({"type": "stop"})
        assert await clock.receive_json() == {"type": "stopped", "seq": 0}
        await clock.refute_push(timeout=5.0)


@pytest.mark.parametrize(
    "every",
    ["1", True, None, 0.001, 0, -1, 3600.5, 10**400, [1]],
    ids=["string", "bool", "null", "too-short", "zero", "negative", "too-long", "huge", "list"],
)
async def test_a_bad_period_is_refused_and_starts_nothing(autojump_clock: Any, every: Any) -> None:
    async with clock_connection() as clock:
        await clock.send_json({"type": "start", "every": every})
        error = await clock.receive_json()
        assert error["type"] == "error" and '"every"' in error["reason"]
        await clock.refute_push(timeout=5.0)


@pytest.mark.parametrize("frame", ['{"type": "start", "every": NaN}', '{"type": "start"}'])
async def test_nan_or_missing_period_is_refused(autojump_clock: Any, frame: str) -> None:
    async with clock_connection() as clock:
        await send_as_is(clock, frame)
        assert (await clock.receive_json())["type"] == "error"
        await clock.refute_push(timeout=5.0)


@pytest.mark.parametrize("frame", ["not json", "[]", '{"type": "pause"}', b"\x00binary"], ids=str)
async def test_bad_input_gets_an_error_and_the_ticker_runs_on(
    autojump_clock: Any, frame: str | bytes
) -> None:
    async with clock_connection() as clock:
        await start(clock, 1.0)
        await send_as_is(clock, frame)
        assert (await clock.receive_json())["type"] == "error"
        assert await clock.receive_json() == {"type": "tick", "seq": 1}


async def test_the_bounds_themselves_are_accepted(autojump_clock: Any) -> None:
    async with clock_connection() as clock:
        await start(clock, 0.01)
        assert await clock.receive_json() == {"type": "tick", "seq": 1}
        sent_at = await start(clock, 3600)
        await clock.refute_push(timeout=3599.0)
        assert await clock.receive_json() == {"type": "tick", "seq": 1}
        assert trio.current_time() - sent_at == pytest.approx(3600.0, abs=0.05)


async def test_ticks_and_stop_on_the_real_clock() -> None:
    async with connect(app) as client:
        await client.send_json({"type": "start", "every": 0.02})
        assert await client.receive_json() == {"type": "started", "every": 0.02}
        for seq in range(1, 4):
            assert await client.receive_json() == {"type": "tick", "seq": seq}
        await client.send_json({"type": "stop"})
        while (message := await client.receive_json())["type"] == "tick":
            pass
        assert message["type"] == "stopped"
        await client.refute_push(timeout=0.3)
