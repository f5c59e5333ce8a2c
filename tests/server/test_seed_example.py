"""The seed guide's handler (examples/seed.py), message for message, on a mock clock."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from examples import seed
from server import App, Remote, Request, websocket

from .serving import WAIT, Termination, Terminations, client, serving


class RecordedSeed(seed.MyWsHandler):
    """The seed handler, unchanged but for recording its terminate call."""

    def __init__(self, log: Terminations) -> None:
        self.log = log

    def terminate(self, reason: Any, request: Request, state: str) -> None:
        self.log.record(Termination(reason, request, state))


async def messages_with_times(ws: Any, count: int, since: float) -> list[tuple[Any, float]]:
    with trio.fail_after(WAIT):
        return [(await ws.get_message(), trio.current_time() - since) for _ in range(count)]


async def test_hello_after_one_second_then_how_you_doin_every_second(
    virtual_clock: trio.testing.MockClock,
) -> None:
    async with serving(seed.app) as served, client(served.url()) as ws:
        connected = trio.current_time()
        received = await messages_with_times(ws, 4, connected)
    assert [message for message, _ in received] == ["Hello!"] + ["How' you doin'?"] * 3
    assert [at for _, at in received] == pytest.approx([1.0, 2.0, 3.0, 4.0], abs=0.01)


async def test_text_is_answered_at_once_and_binary_is_ignored(
    virtual_clock: trio.testing.MockClock,
) -> None:
    async with serving(seed.app) as served, client(served.url()) as ws:
        connected = trio.current_time()
        await ws.send_message("m")
        await ws.send_message(b"binary is ignored")
        await ws.send_message("café, ☕")
        received = await messages_with_times(ws, 3, connected)
    assert received == [
        ("That's what she said! m", 0.0),
        ("That's what she said! café, ☕", 0.0),
        ("Hello!", pytest.approx(1.0, abs=0.01)),
    ]


async def test_replies_interleave_with_the_ticks(virtual_clock: trio.testing.MockClock) -> None:
    async with serving(seed.app) as served, client(served.url()) as ws:
        connected = trio.current_time()
        assert await messages_with_times(ws, 1, connected) == [("Hello!", pytest.approx(1.0))]
        await trio.sleep(0.5)
        await ws.send_message("between ticks")
        received = await messages_with_times(ws, 2, connected)
    assert received == [
        ("That's what she said! between ticks", pytest.approx(1.5, abs=0.01)),
        ("How' you doin'?", pytest.approx(2.0, abs=0.01)),
    ]


async def test_terminate_gets_the_state_and_the_timer_dies_with_the_connection(
    virtual_clock: trio.testing.MockClock,
) -> None:
    log = Terminations()
    app = App([websocket("/", lambda: RecordedSeed(log))])
    async with serving(app) as served:
        async with client(served.url()) as ws:
            assert await messages_with_times(ws, 2, trio.current_time()) == [
                ("Hello!", pytest.approx(1.0, abs=0.01)),
                ("How' you doin'?", pytest.approx(2.0, abs=0.01)),
            ]
        call = await log.one()
        assert (call.reason, call.state) == (Remote(1000), "undefined_state")
        node = served.node
        await served.until_no_connections()
        assert node.statistics().timers == 0
        await trio.sleep(10)  # no tick reaches anyone any more
        assert node.statistics().dead_letters == 0
