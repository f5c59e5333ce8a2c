"""A member who floods the chat is held to its rate at the source; readers never pay for it."""

from __future__ import annotations

import contextlib
from typing import Any

import trio
import trio.testing
from trio_websocket import ConnectionClosed

from examples.chat import ChatLimits, make_app
from tests.examples.kit import Client, connect, join, member
from tests.server.kit import WAIT, running_clean

FLOOD = 5_000
"""Says the flooder tries to send, as fast as the socket takes them."""


async def read_until_closed(client: Client, frames: list[dict[str, Any]]) -> None:
    """Collect what the server sends ``client`` until it closes (or ``WAIT`` passes)."""
    with trio.move_on_after(WAIT), contextlib.suppress(ConnectionClosed):
        while True:
            frames.append(await client.receive(timeout=WAIT))


async def said_by(client: Client, nick: str, until: dict[str, Any]) -> int:
    """How many ``said`` from ``nick`` reach ``client`` before the frame ``until``."""
    count = 0
    with trio.fail_after(WAIT):
        while (frame := await client.receive()) != until:
            count += frame["type"] == "said" and frame["nick"] == nick
    return count


async def test_a_flooder_is_held_to_its_rate_then_closed_with_1008_and_readers_stay(
    virtual_clock: trio.testing.MockClock,
) -> None:
    limits = ChatLimits()
    async with running_clean(make_app()) as server, member(server, "lobby", "ann") as reader:
        async with connect(server, "/ws/lobby") as flooder:
            await join(flooder, "bob")
            assert await reader.receive() == {"type": "joined", "nick": "bob"}
            start = trio.current_time()
            to_flooder: list[dict[str, Any]] = []
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_until_closed, flooder, to_flooder)
                with contextlib.suppress(ConnectionClosed):
                    for number in range(FLOOD):
                        await flooder.send(type="say", text=f"flood {number}")
            elapsed = trio.current_time() - start
            assert flooder.ws.closed is not None and flooder.ws.closed.code == 1008
        heard = await said_by(reader, "bob", until={"type": "left", "nick": "bob"})
        assert 0 < heard <= limits.message_burst + limits.message_rate * elapsed
        errors = [frame["reason"] for frame in to_flooder if frame["type"] == "error"]
        assert errors, to_flooder[:5]  # one per run of drops (a refill mid-flood starts a run)
        assert all(error.startswith("slow down: at most 10 messages") for error in errors)
        await reader.send(type="say", text="still here")
        frame = await reader.receive()
        assert (frame["type"], frame["nick"], frame["text"]) == ("said", "ann", "still here")


async def test_members_talking_at_a_normal_pace_are_never_refused(
    virtual_clock: trio.testing.MockClock,
) -> None:
    async with running_clean(make_app()) as server, member(server, "lobby", "ann") as ann:
        async with member(server, "lobby", "bob") as bob:
            await ann.receive_type("joined")
            for number in range(300):  # 5 a second for a minute, alternating speakers
                speaker = (ann, bob)[number % 2]
                await speaker.send(type="say", text=f"line {number}")
                await trio.sleep(0.2)
            for client in (ann, bob):
                texts = [(await client.receive())["text"] for _ in range(300)]
                assert texts == [f"line {number}" for number in range(300)]
