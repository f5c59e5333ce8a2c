"""The seed guide's handler (examples/seed.py), message for message, on virtual time.

Most run in process with the test kit's ``drive`` (no socket, pytest-trio's autojump clock);
one runs the app over a real socket, as a user's browser would meet it.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from examples import seed
from server import ClientClosed, Text
from server.testing import connect, drive


async def pushes_with_times(conn: Any, count: int, since: float) -> list[tuple[Any, float]]:
    return [(await conn.receive(), trio.current_time() - since) for _ in range(count)]


async def test_hello_after_one_second_then_how_you_doin_every_second(autojump_clock: Any) -> None:
    async with drive(seed.MyWsHandler()) as conn:
        received = await pushes_with_times(conn, 4, trio.current_time())
    assert [push for push, _ in received] == [Text("Hello!")] + [Text("How' you doin'?")] * 3
    assert [at for _, at in received] == pytest.approx([1.0, 2.0, 3.0, 4.0])


async def test_text_is_answered_at_once_and_binary_is_ignored(autojump_clock: Any) -> None:
    async with drive(seed.MyWsHandler()) as conn:
        connected = trio.current_time()
        await conn.send_text("m")
        await conn.send_binary(b"binary is ignored")
        await conn.send_text("café, ☕")
        received = await pushes_with_times(conn, 3, connected)
    assert received == [
        (Text("That's what she said! m"), 0.0),
        (Text("That's what she said! café, ☕"), 0.0),
        (Text("Hello!"), pytest.approx(1.0)),
    ]


async def test_replies_interleave_with_the_ticks(autojump_clock: Any) -> None:
    async with drive(seed.MyWsHandler()) as conn:
        connected = trio.current_time()
        assert await pushes_with_times(conn, 1, connected) == [(Text("Hello!"), 1.0)]
        await trio.sleep(0.5)
        await conn.send_text("between ticks")
        assert await pushes_with_times(conn, 2, connected) == [
            (Text("That's what she said! between ticks"), pytest.approx(1.5)),
            (Text("How' you doin'?"), pytest.approx(2.0)),
        ]


async def test_terminate_gets_the_state_and_the_timer_dies_with_the_connection(
    autojump_clock: Any,
) -> None:
    async with drive(seed.MyWsHandler()) as conn:
        assert await conn.receive() == Text("Hello!")
        assert await conn.close() == ClientClosed(1000)
        assert conn.state == "undefined_state"
        assert conn.node.statistics().timers == 0
        await trio.sleep(10)  # no tick reaches anyone any more
        assert conn.node.statistics().dead_letters == 0


async def test_over_a_real_socket(virtual_clock: trio.testing.MockClock) -> None:
    async with connect(seed.app) as client:
        connected = trio.current_time()
        await client.send_text("m")
        assert await client.receive() == Text("That's what she said! m")
        assert await client.receive() == Text("Hello!")
        assert trio.current_time() - connected == pytest.approx(1.0, abs=0.01)
        await client.refute_push(timeout=0.5)
