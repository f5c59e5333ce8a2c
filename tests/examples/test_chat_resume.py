"""The chat on topics: a client that comes back with the position of the last message it
showed gets exactly the messages said meanwhile, once each, and no ``history``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from examples.chat import make_app
from tests.examples.kit import Client, connect, member
from tests.server.kit import Served, running_clean


@asynccontextmanager
async def chat() -> AsyncIterator[Served]:
    async with running_clean(make_app()) as server:
        yield server


async def follow_and_join(client: Client, nick: str, after: dict[str, Any] | None) -> None:
    """What the page does on every connect: follow the room's topic, then join."""
    await client.send(type="subscribe", topic="room:lobby", **(after or {}))
    await client.send(type="join", nick=nick)


async def test_a_client_back_from_a_drop_gets_each_message_it_missed_once() -> None:
    async with chat() as server, member(server, "lobby", "bob") as bob:
        async with connect(server, "/ws/lobby") as ann:
            await follow_and_join(ann, "ann", None)
            assert (await ann.receive_type("subscribed"))["offset"] == 0
            await bob.send(type="say", text="seen")
            seen = await ann.receive_type("said")
            assert seen["topic"] == "room:lobby" and seen["offset"] == 1
        for n in range(20):
            await bob.send(type="say", text=f"missed {n}")
        await bob.receive_type("left")
        async with connect(server, "/ws/lobby") as ann:
            await follow_and_join(ann, "ann", {"epoch": seen["epoch"], "offset": seen["offset"]})
            frames = await ann.drain()
    kinds = [frame["type"] for frame in frames]
    assert "history" not in kinds
    said = [frame for frame in frames if frame["type"] == "said"]
    assert [frame["text"] for frame in said] == [f"missed {n}" for n in range(20)]
    assert [frame["offset"] for frame in said] == list(range(2, 22))
    assert kinds.index("subscribed") < kinds.index("said")


async def test_a_position_the_room_cannot_honour_is_said_to_be_unrecoverable() -> None:
    async with chat() as server, member(server, "lobby", "bob") as bob:
        await bob.send(type="say", text="kept")
        async with connect(server, "/ws/lobby") as ann:
            await follow_and_join(ann, "ann", {"epoch": "another server's", "offset": 3})
            answer = await ann.receive_type("unrecoverable")
            assert answer["why"] == "epoch"
            assert (await ann.receive_type("said"))["text"] == "kept"


async def test_only_the_rooms_own_topic_may_be_followed() -> None:
    async with chat() as server, connect(server, "/ws/lobby") as ann:
        await ann.send(type="subscribe", topic="room:elsewhere")
        assert "follows 'room:lobby' only" in (await ann.receive_type("error"))["reason"]
