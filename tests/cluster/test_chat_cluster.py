"""The chat example on two servers sharing one Redis: one room cluster-wide, shared members,
history and messages; when the room's server stops, the room starts again on the other, with
its members and its history."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

from actors import Address
from actors.backend_redis import RedisBackend
from examples.chat import RoomSettings, make_app
from server.run.supervised import Server
from tests.examples.kit import connect, join, member
from tests.server.kit import WAIT, running_clean


@asynccontextmanager
async def chat_node(url: str, prefix: str) -> AsyncIterator[Server]:
    """A chat server on a free port, in the cluster ``prefix`` on ``url``."""
    app = make_app(RoomSettings(settle=0.3))
    options = attrs.evolve(app.options, redis_url=url, cluster_prefix=prefix)
    async with running_clean(attrs.evolve(app, options=options)) as server:
        assert server.node is not None and isinstance(server.node.backend, RedisBackend)
        await server.node.backend.wait_connected()
        yield server


async def room_seen(server: Server, room: str) -> Address:
    """Wait until ``server``'s node knows where ``room`` runs."""
    assert server.node is not None and isinstance(server.node.backend, RedisBackend)
    node = server.node
    with trio.fail_after(WAIT):
        await node.backend.wait_until(lambda: node.whereis(f"room:{room}") is not None)
    address = node.whereis(f"room:{room}")
    assert address is not None
    return address


async def test_two_servers_share_a_room_its_members_history_and_messages(
    redis_url: str, prefix: str
) -> None:
    async with chat_node(redis_url, prefix) as first, chat_node(redis_url, prefix) as second:
        async with member(first, "lobby", "ann") as ann:
            await ann.send(type="say", text="before bob")
            assert (await ann.receive_type("said"))["text"] == "before bob"
            room = await room_seen(second, "lobby")
            assert first.node is not None and room.node == first.node.name
            async with connect(second, "/ws/lobby") as bob:
                history = await join(bob, "bob")
                assert [m["text"] for m in history["messages"]] == ["before bob"]
                assert await ann.receive() == {"type": "joined", "nick": "bob"}
                await bob.send(type="say", text="hi from the other server")
                to_ann, to_bob = await ann.receive_type("said"), await bob.receive_type("said")
                assert to_ann == to_bob and to_ann["nick"] == "bob"
            assert await ann.receive_type("left") == {"type": "left", "nick": "bob"}


async def test_when_the_rooms_server_stops_the_room_starts_again_on_a_live_one(
    redis_url: str, prefix: str
) -> None:
    async with chat_node(redis_url, prefix) as second, connect(second, "/ws/lobby") as bob:
        async with chat_node(redis_url, prefix) as first, member(first, "lobby", "ann") as ann:
            await ann.send(type="say", text="kept")
            await ann.receive_type("said")
            await room_seen(second, "lobby")
            await join(bob, "bob")
        # The first server drained: bob's connection opens the room again on the second, which
        # finds bob in presence and the history in Redis.
        assert await bob.receive_type("left") == {"type": "left", "nick": "ann"}
        await bob.send(type="say", text="anyone?", id=1)
        assert await bob.receive_type("sent") == {"type": "sent", "id": 1}
        room = await room_seen(second, "lobby")
        assert second.node is not None and room.node == second.node.name
        async with connect(second, "/ws/lobby") as cyd:
            history = await join(cyd, "cyd")
        assert [m["text"] for m in history["messages"]] == ["kept", "anyone?"]


async def test_two_servers_opening_a_new_room_at_once_end_with_one_room(
    redis_url: str, prefix: str
) -> None:
    async with (
        chat_node(redis_url, prefix) as first,
        chat_node(redis_url, prefix) as second,
        connect(first, "/ws/race") as ann,
        connect(second, "/ws/race") as bob,
    ):
        await ann.send(type="join", nick="ann")
        await bob.send(type="join", nick="bob")
        # Each gets its history and joined (the loser's join, if any, is retried by the client).
        for client, nick in ((ann, "ann"), (bob, "bob")):
            with trio.fail_after(WAIT):
                while True:
                    frame = await client.receive()
                    if frame == {"type": "joined", "nick": nick}:
                        break
                    if frame["type"] == "error":
                        await client.send(type="join", nick=nick)
        assert await room_seen(first, "race") == await room_seen(second, "race")
        await ann.send(type="say", text="one room")
        assert (await bob.receive_type("said"))["text"] == "one room"
