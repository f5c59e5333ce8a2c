"""The chat on two ``corral serve`` processes sharing Redis, one of them killed (SIGKILL): the
other's member lists drop the dead node's users by themselves, the room's history survives,
and the next message goes through; Redis losing everything leaves no ghost in a member list."""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio
import trio_websocket

from tests.examples.kit import Client, join
from tests.server.corral_process import CorralProcess, corral_serve
from tests.server.kit import client

from .redis_kit import RedisServer

DETECTION = 1.0
"""The nodes' failure detection (--failure-detection), in seconds."""
NOTICED = DETECTION + 10.0
"""A generous bound on a node's death reaching a member list (detection + one diff interval
on a loaded machine): the test waits on the event, this only stops it hanging."""


@asynccontextmanager
async def chat_node(
    tmp_path: Path, name: str, url: str, prefix: str
) -> AsyncIterator[CorralProcess]:
    """The chat example as a node of the cluster ``prefix`` on ``url``."""
    folder = tmp_path / name
    folder.mkdir()
    options = ["--redis", url, "--cluster-prefix", prefix]
    options += ["--failure-detection", str(DETECTION)]
    async with corral_serve(folder, "examples.chat:app", *options) as node:
        yield node


@asynccontextmanager
async def chatter(node: CorralProcess, room: str = "lobby") -> AsyncIterator[Client]:
    """A client of ``node``'s chat in ``room`` (not joined yet); one whose server was killed
    ends quietly."""
    with contextlib.suppress(trio_websocket.ConnectionClosed):
        async with client(f"ws://127.0.0.1:{node.port}/ws/{room}") as ws:
            yield Client(ws)


async def join_seeing(client: Client, nick: str, other: str) -> tuple[list[str], list[str]]:
    """Join as ``nick`` and wait until ``other`` is known to be here: in the member list, or in
    a ``joined`` after it (presence reaches a node an interval, or a sync, after the join).
    Returns the texts of the history and the member list."""
    await client.send(type="join", nick=nick)
    history = await client.receive_type("history")
    members = await members_of(client)
    if other not in members:
        while (await client.receive_type("joined"))["nick"] != other:
            pass
    return [message["text"] for message in history["messages"]], members


def _types(frames: list[dict[str, Any]]) -> list[str]:
    return [frame["type"] for frame in frames]


async def members_of(client: Client) -> list[str]:
    """The member list the server sends a client that asked to join."""
    members = await client.receive_type("members")
    return sorted(members["nicks"])


async def test_when_the_rooms_node_is_killed_the_others_lose_its_users_but_not_the_room(
    tmp_path: Path, redis_url: str, prefix: str
) -> None:
    async with (
        chat_node(tmp_path, "a", redis_url, prefix) as a,
        chat_node(tmp_path, "b", redis_url, prefix) as b,
        chatter(b) as bob,
    ):
        async with chatter(a) as ann:
            await join(ann, "ann")  # the room starts on a
            await ann.send(type="say", text="before", id=1)
            await ann.receive_type("sent")
            history, _ = await join_seeing(bob, "bob", "ann")
            assert history == ["before"]
            a.process.kill()
            await bob.send(type="say", text="after", id=2)  # while the room is moving
            # ann's leave (a presence diff) and the say's way through the new room, in any order.
            frames = []
            with trio.fail_after(NOTICED):
                while {"type": "sent", "id": 2} not in frames or "left" not in _types(frames):
                    frames.append(await bob.receive(math.inf))
            assert {"type": "left", "nick": "ann"} in frames
            assert [frame["text"] for frame in frames if frame["type"] == "said"] == ["after"]
        async with chatter(b) as cyd:
            history = await join(cyd, "cyd")
            assert [m["text"] for m in history["messages"]] == ["before", "after"]
        assert "Traceback" not in b.log


async def test_a_node_that_is_not_the_rooms_dies_and_its_users_leave_everywhere(
    tmp_path: Path, redis_url: str, prefix: str
) -> None:
    async with (
        chat_node(tmp_path, "a", redis_url, prefix) as a,
        chat_node(tmp_path, "b", redis_url, prefix) as b,
        chatter(b) as bob,
    ):
        await join(bob, "bob")  # the room starts on b
        async with chatter(a) as ann:
            await join(ann, "ann")
            assert await bob.receive_type("joined") == {"type": "joined", "nick": "ann"}
            a.process.kill()
            with trio.fail_after(NOTICED):
                assert await bob.receive_type("left") == {"type": "left", "nick": "ann"}
        await bob.send(type="say", text="still here", id=1)
        assert await bob.receive_type("sent") == {"type": "sent", "id": 1}


async def test_after_redis_loses_everything_no_one_who_left_stays_listed(
    tmp_path: Path, private_redis: RedisServer, prefix: str
) -> None:
    url = private_redis.url
    async with (
        chat_node(tmp_path, "a", url, prefix) as a,
        chat_node(tmp_path, "b", url, prefix) as b,
        chatter(b) as bob,
    ):
        await join(bob, "bob")
        async with chatter(a) as ann:
            await join(ann, "ann")
            assert await bob.receive_type("joined") == {"type": "joined", "nick": "ann"}
            private_redis.stop()
        # ann closed while Redis was down: nobody could hear it then.
        private_redis.start()
        with trio.fail_after(NOTICED):
            assert await bob.receive_type("left") == {"type": "left", "nick": "ann"}
        async with chatter(a) as cyd:  # on a, which may have to hear bob again first
            _, members = await join_seeing(cyd, "cyd", "bob")
            assert "ann" not in members
