"""Rooms are not a resource one client can use up: empty rooms go, history is bounded as a whole.

Over real sockets on 127.0.0.1 (a second client comes from 127.0.0.2, another peer address).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import trio
import trio.testing
from trio_websocket import wrap_client_stream

from examples.chat import ChatLimits, RoomSettings, make_app
from server.run.supervised import Server
from tests.examples.kit import Client, connect, join, member
from tests.server.kit import WAIT, running_clean

LIFTED = 1_000_000
"""A per-peer room quota no test reaches, for tests about something else."""


@asynccontextmanager
async def chat(limits: ChatLimits, settings: RoomSettings | None = None) -> AsyncIterator[Server]:
    async with running_clean(make_app(settings, limits=limits)) as server:
        yield server


@asynccontextmanager
async def connect_from(server: Server, path: str, local: str) -> AsyncIterator[Client]:
    """A client whose TCP connection comes from the loopback address ``local``."""
    stream = await trio.open_tcp_stream("127.0.0.1", server.port, local_address=local)
    async with trio.open_nursery() as nursery:
        ws = await wrap_client_stream(nursery, stream, "127.0.0.1", path)
        yield Client(ws)
        await ws.aclose()


async def visit(server: Server, room: str, says: int = 0, size: int = 100) -> dict[str, Any]:
    """Join ``room``, say ``says`` texts of ``size`` bytes, leave; the join's first answer."""
    async with connect(server, f"/ws/{room}") as client:
        await client.send(type="join", nick="visitor")
        answer = await client.receive()
        if answer["type"] == "error":
            return answer
        await client.receive_type("joined")
        for number in range(says):
            await client.send(type="say", text=f"{number:04} {'x' * (size - 5)}")
            await client.receive_type("said")
    return answer


def room_running(server: Server, room: str) -> bool:
    assert server.node is not None
    node = server.node
    return bool(node.whereis(f"room:{room}") or node.whereis(f"room-supervisor:{room}"))


async def gone(server: Server, room: str) -> None:
    """Wait (in virtual time) until ``room`` and its supervisor have stopped."""
    with trio.fail_after(WAIT):
        while room_running(server, room):
            await trio.sleep(0.01)


async def history_of(server: Server, room: str) -> list[str]:
    async with connect(server, f"/ws/{room}") as client:
        history = await join(client, "reader")
    return [message["text"][:4] for message in history["messages"]]


async def test_an_empty_room_without_history_stops_at_once(
    virtual_clock: trio.testing.MockClock,
) -> None:
    async with chat(ChatLimits()) as server:
        assert (await visit(server, "passing"))["type"] == "history"
        await gone(server, "passing")  # well before the 300 s empty-room TTL


async def test_one_client_joining_and_leaving_many_rooms_locks_nobody_out(
    virtual_clock: trio.testing.MockClock,
) -> None:
    limits = ChatLimits(max_rooms=10, room_creation_burst=LIFTED)
    async with chat(limits) as server:
        for number in range(30):
            answer = await visit(server, f"churn-{number}")
            assert answer["type"] == "history", answer
        async with member(server, "newcomer", "ann") as ann:
            await ann.send(type="say", text="in")
            assert (await ann.receive())["text"] == "in"


async def test_a_peer_that_starts_rooms_too_fast_is_refused_and_others_are_not(
    virtual_clock: trio.testing.MockClock,
) -> None:
    limits = ChatLimits()
    async with chat(limits) as server:
        start, started = trio.current_time(), 0
        for number in range(3 * limits.room_creation_burst):
            answer = await visit(server, f"churn-{number}")
            if answer["type"] == "error":
                assert answer["reason"].startswith("too many new rooms from your address")
                break
            started += 1
        elapsed = trio.current_time() - start
        assert started <= limits.room_creation_burst + limits.room_creation_rate * elapsed
        async with connect_from(server, "/ws/elsewhere", "127.0.0.2") as other:
            await join(other, "bob")  # another address starts a room
            async with member(server, "elsewhere", "ann"):  # open rooms stay open to all
                assert await other.receive() == {"type": "joined", "nick": "ann"}


async def test_at_max_rooms_the_least_recently_used_empty_room_makes_way(
    virtual_clock: trio.testing.MockClock,
) -> None:
    limits = ChatLimits(max_rooms=5, room_creation_burst=LIFTED)
    async with chat(limits) as server:
        for number in range(5):
            await visit(server, f"kept-{number}", says=1)
        async with member(server, "newcomer", "ann"):
            await gone(server, "kept-0")
            assert all(room_running(server, f"kept-{number}") for number in range(1, 5))


async def test_history_of_empty_rooms_is_bounded_as_a_whole_least_recently_used_first(
    virtual_clock: trio.testing.MockClock,
) -> None:
    limits = ChatLimits(max_history_bytes=20_000, room_creation_burst=LIFTED)
    async with chat(limits) as server:
        for number in range(10):
            await visit(server, f"filled-{number}", says=10, size=1000)  # ~12.5 KB each
        for number in range(9):
            await gone(server, f"filled-{number}")
        assert await history_of(server, "filled-9") == [f"{n:04}" for n in range(10)]


async def test_when_every_room_is_occupied_the_speaking_room_sheds_its_oldest_history(
    virtual_clock: trio.testing.MockClock,
) -> None:
    limits = ChatLimits(max_history_bytes=5_000, room_creation_burst=LIFTED)
    async with chat(limits) as server, member(server, "busy", "ann") as ann:
        for number in range(10):
            await ann.send(type="say", text=f"{number:04} {'x' * 995}")
            await ann.receive_type("said")
        kept = await history_of(server, "busy")
        assert 0 < len(kept) < 5 and kept[-1] == "0009"
        assert kept == [f"{n:04}" for n in range(10 - len(kept), 10)]


async def test_one_peer_address_has_a_bounded_number_of_connections_in_rooms(
    virtual_clock: trio.testing.MockClock,
) -> None:
    limits = ChatLimits(max_members_per_peer=3, room_creation_burst=LIFTED)
    async with chat(limits) as server, AsyncExitStack() as stack:
        watcher = await stack.enter_async_context(connect_from(server, "/ws/room-0", "127.0.0.2"))
        await join(watcher, "watcher")
        first = await stack.enter_async_context(member(server, "room-0", "hog-0"))
        for number in range(1, 3):
            await stack.enter_async_context(member(server, f"room-{number}", f"hog-{number}"))
        async with connect(server, "/ws/room-3") as one_too_many:
            await one_too_many.send(type="join", nick="hog-3")
            assert await one_too_many.receive() == {
                "type": "error",
                "reason": "too many connections from your address are in rooms",
            }
        async with connect_from(server, "/ws/room-3", "127.0.0.2") as other:
            await join(other, "elsewhere")  # other addresses are not affected
        await first.ws.aclose()
        assert await watcher.receive_type("left") == {"type": "left", "nick": "hog-0"}
        async with member(server, "room-3", "hog-3"):  # a closed connection frees its place
            pass
