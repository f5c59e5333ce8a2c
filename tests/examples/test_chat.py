"""The chat example over real WebSockets: rooms, history, members, joins and leaves, restarts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime
from typing import Any

import pytest
import trio
import trio.testing

import examples.chat.handler as chat_handler
from actors import KILLED, Address, Crash, ExitReason
from examples.chat import RoomSettings, make_app
from tests.examples.kit import connect, connect_over, join, member
from tests.server.kit import WAIT, Served, get, http_exchange, rejection, running_clean


@asynccontextmanager
async def chat(settings: RoomSettings | None = None) -> AsyncIterator[Served]:
    """A chat server with rooms of its own."""
    async with running_clean(make_app(settings)) as server:
        yield server


def room_address(server: Served, room: str) -> Address | None:
    assert server.node is not None
    return server.node.whereis(f"room:{room}")


async def restarted(server: Served, room: str, old: Address) -> Address:
    """Wait until ``room`` runs at an address other than ``old``."""
    with trio.fail_after(WAIT):
        while (address := room_address(server, room)) in (None, old):
            await trio.sleep(0.01)
    assert address is not None
    return address


def start_of(history: dict[str, Any], room: str) -> dict[str, Any]:
    """The position an empty history frame of ``room`` ends at: offset 0 of some epoch."""
    assert isinstance(history.get("epoch"), str) and history["epoch"]
    return {"topic": f"room:{room}", "epoch": history["epoch"], "offset": 0}


async def test_a_joiner_gets_history_members_and_its_own_joined() -> None:
    async with chat() as server, connect(server, "/ws/lobby") as ann:
        await ann.send(type="join", nick="ann")
        history = await ann.receive()
        assert history == {"type": "history", "messages": [], **start_of(history, "lobby")}
        assert await ann.receive() == {"type": "members", "nicks": ["ann"]}
        assert await ann.receive() == {"type": "joined", "nick": "ann"}


async def test_said_reaches_every_member_and_the_sender_with_an_iso_time() -> None:
    async with chat() as server, member(server, "lobby", "ann") as ann:
        async with member(server, "lobby", "bob") as bob:
            assert await ann.receive() == {"type": "joined", "nick": "bob"}
            await ann.send(type="say", text="hi <b>bob</b> & co")
            to_bob, to_ann = await bob.receive(), await ann.receive()
            assert to_bob == to_ann
            assert to_bob["type"] == "said" and to_bob["nick"] == "ann"
            assert to_bob["text"] == "hi <b>bob</b> & co"
            assert datetime.fromisoformat(to_bob["at"]).utcoffset() is not None


async def test_members_are_listed_in_join_order() -> None:
    async with chat() as server, AsyncExitStack() as stack:
        for nick in ("ann", "bob"):
            await stack.enter_async_context(member(server, "lobby", nick))
        async with connect(server, "/ws/lobby") as cyd:
            await cyd.send(type="join", nick="cyd")
            assert (await cyd.receive())["type"] == "history"
            assert await cyd.receive() == {"type": "members", "nicks": ["ann", "bob", "cyd"]}


async def test_several_clients_in_two_rooms_hear_only_their_own_room() -> None:
    rooms = {"red": ["ann", "bob", "cyd", "dan", "eve"], "blue": ["fay", "gus", "hal"]}
    async with chat() as server, AsyncExitStack() as stack:
        clients = {
            (room, nick): await stack.enter_async_context(member(server, room, nick))
            for room, nicks in rooms.items()
            for nick in nicks
        }
        for (room, nick), client in clients.items():
            await client.send(type="say", text=f"{nick} in {room}")
        for (room, _), client in clients.items():
            heard = [(await client.receive_type("said"))["text"] for _ in rooms[room]]
            assert sorted(heard) == sorted(f"{nick} in {room}" for nick in rooms[room])
            await client.nothing_more()


async def test_history_keeps_the_last_fifty_messages_oldest_first() -> None:
    async with chat() as server, member(server, "lobby", "ann") as ann:
        for number in range(60):
            await ann.send(type="say", text=f"message {number}")
        for number in range(60):
            assert (await ann.receive())["text"] == f"message {number}"
        async with connect(server, "/ws/lobby") as bob:
            history = await join(bob, "bob")
        texts = [message["text"] for message in history["messages"]]
        assert texts == [f"message {number}" for number in range(10, 60)]
        assert all(message["nick"] == "ann" for message in history["messages"])


async def test_history_and_members_belong_to_their_room() -> None:
    async with chat() as server, member(server, "red", "ann") as ann:
        await ann.send(type="say", text="red only")
        await ann.receive_type("said")
        async with connect(server, "/ws/blue") as bob:
            history = await join(bob, "bob")
            assert history == {"type": "history", "messages": [], **start_of(history, "blue")}


async def test_a_client_that_closes_is_announced_as_left() -> None:
    async with chat() as server, member(server, "lobby", "ann") as ann:
        async with member(server, "lobby", "bob"):
            assert await ann.receive() == {"type": "joined", "nick": "bob"}
        assert await ann.receive() == {"type": "left", "nick": "bob"}
        async with connect(server, "/ws/lobby") as cyd:
            await cyd.send(type="join", nick="cyd")
            await cyd.receive_type("history")
            assert await cyd.receive() == {"type": "members", "nicks": ["ann", "cyd"]}


async def test_a_client_that_drops_tcp_is_announced_as_left() -> None:
    async with chat() as server, member(server, "lobby", "ann") as ann:
        async with connect_over(server, "/ws/lobby") as (bob, stream):
            await join(bob, "bob")
            assert await ann.receive() == {"type": "joined", "nick": "bob"}
            await trio.aclose_forcefully(stream)
            assert await ann.receive() == {"type": "left", "nick": "bob"}


async def test_a_member_leaves_through_the_monitor_when_terminate_is_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(chat_handler.ChatHandler, "terminate", lambda *args: None)
    async with chat() as server, member(server, "lobby", "ann") as ann:
        async with member(server, "lobby", "bob"):
            assert await ann.receive() == {"type": "joined", "nick": "bob"}
        assert await ann.receive() == {"type": "left", "nick": "bob"}


async def test_a_nick_freed_by_leaving_can_be_taken_again() -> None:
    async with chat() as server, member(server, "lobby", "ann") as ann:
        async with member(server, "lobby", "bob"):
            pass
        await ann.receive_type("left")
        async with member(server, "lobby", "bob"):
            assert await ann.receive() == {"type": "joined", "nick": "bob"}


@pytest.mark.parametrize(
    "reason", [KILLED, Crash(RuntimeError("injected"))], ids=["killed", "crashed"]
)
async def test_a_crashed_room_restarts_with_its_members_and_nobody_has_to_rejoin(
    reason: ExitReason,
) -> None:
    async with chat() as server, member(server, "lobby", "ann") as ann:
        async with member(server, "lobby", "bob") as bob:
            await ann.receive_type("joined")
            await ann.send(type="say", text="before the crash")
            await ann.receive_type("said"), await bob.receive_type("said")
            old = room_address(server, "lobby")
            assert old is not None and server.node is not None
            server.node.exit(old, reason)
            await restarted(server, "lobby", old)
            await bob.send(type="say", text="after the crash", id=1)
            assert (await ann.receive())["text"] == "after the crash"
            assert (await bob.receive())["text"] == "after the crash"
            assert await bob.receive() == {"type": "sent", "id": 1}  # the new room has bob
            await ann.nothing_more(0.5)  # no leave, no join, no error: the member list held
            async with connect(server, "/ws/lobby") as cyd:
                history = await join(cyd, "cyd")
            # The history is in the room's topic, which outlives the room.
            texts = [m["text"] for m in history["messages"]]
            assert texts == ["before the crash", "after the crash"]


async def test_a_crash_in_one_room_leaves_other_rooms_alone() -> None:
    async with chat() as server, member(server, "red", "ann") as ann:
        async with member(server, "blue", "bob") as bob:
            await bob.send(type="say", text="blue before")
            await bob.receive_type("said")
            red = room_address(server, "red")
            assert red is not None and server.node is not None
            server.node.exit(red, KILLED)
            await restarted(server, "red", red)
            async with connect(server, "/ws/blue") as cyd:
                history = await join(cyd, "cyd")
            assert [m["text"] for m in history["messages"]] == ["blue before"]
            assert await bob.receive() == {"type": "joined", "nick": "cyd"}
            assert await bob.receive() == {"type": "left", "nick": "cyd"}
            await bob.nothing_more()
            await ann.nothing_more()


async def test_a_room_that_keeps_crashing_gives_up_alone_and_its_members_open_it_again() -> None:
    async with chat() as server, member(server, "red", "ann") as ann:
        async with member(server, "blue", "bob") as bob:
            assert server.node is not None
            address = room_address(server, "red")
            for _ in range(4):  # the room's supervisor allows 3 restarts in 5 s
                assert address is not None
                server.node.exit(address, KILLED)
                address = await restarted(server, "red", address)
            # The fourth was one too many: ann's connection saw the room end and opened it anew.
            await bob.send(type="say", text="blue carries on")
            assert (await bob.receive())["text"] == "blue carries on"
            await ann.send(type="say", text="red again", id=7)
            assert (await ann.receive())["text"] == "red again"
            assert await ann.receive() == {"type": "sent", "id": 7}


async def test_an_empty_room_stops_after_its_ttl_and_starts_afresh(
    virtual_clock: trio.testing.MockClock,
) -> None:
    async with chat(RoomSettings(empty_ttl=0.2)) as server:
        async with member(server, "lobby", "ann") as ann:
            await ann.send(type="say", text="soon forgotten")
            await ann.receive_type("said")
        assert server.node is not None
        node = server.node
        with trio.fail_after(WAIT):  # the room stops, then its supervisor (a moment later)
            while room_address(server, "lobby") or node.whereis("room-supervisor:lobby"):
                await trio.sleep(0.05)
        async with connect(server, "/ws/lobby") as bob:
            history = await join(bob, "bob")
            assert history == {"type": "history", "messages": [], **start_of(history, "lobby")}


async def test_a_room_with_members_does_not_stop(virtual_clock: trio.testing.MockClock) -> None:
    async with chat(RoomSettings(empty_ttl=0.05)) as server:
        async with member(server, "lobby", "ann") as ann:
            address = room_address(server, "lobby")
            await trio.sleep(0.3)  # six TTLs, in virtual time
            assert room_address(server, "lobby") == address
            await ann.send(type="say", text="still here")
            assert (await ann.receive())["text"] == "still here"


async def test_room_names_are_percent_decoded_and_distinct() -> None:
    async with chat() as server:
        async with member(server, "caf%C3%A9", "ann"), member(server, "cafe", "bob"):
            assert room_address(server, "café") is not None
            assert room_address(server, "cafe") is not None


@pytest.mark.parametrize("path", ["/ws/" + "x" * 65, "/ws/a%0Ab", "/ws/", "/ws/%20pad"])
async def test_a_bad_room_name_is_not_found(path: str) -> None:
    async with chat() as server:
        assert (await rejection(server.url(path))).status_code == 404


async def test_the_page_and_its_files_are_served_at_the_root() -> None:
    async with chat() as server:
        status, headers, page = await http_exchange(server.port, get("/", "Connection: close"))
        assert status == 200 and "text/html" in headers["content-type"]
        assert b'<script src="chat.js"' in page
        status, headers, _ = await http_exchange(server.port, get("/chat.js", "Connection: close"))
        assert status == 200 and "javascript" in headers["content-type"]
        status, headers, _ = await http_exchange(server.port, get("/chat.css", "Connection: close"))
        assert status == 200 and "text/css" in headers["content-type"]


async def test_idle_rooms_with_history_wake_only_when_their_ttl_is_due(
    virtual_clock: trio.testing.MockClock,
) -> None:
    """A parked room costs nothing between messages: no wake-up until its one TTL timer."""
    async with chat(RoomSettings(empty_ttl=300.0)) as server:
        assert server.node is not None
        node = server.node
        rooms = [f"idle-{number}" for number in range(5)]
        for room in rooms:
            async with member(server, room, "ann") as ann:
                await ann.send(type="say", text="one message")
                await ann.receive_type("said")
        addresses = [room_address(server, room) for room in rooms]
        actors_of = [node.actor(address) for address in addresses if address is not None]
        assert len(actors_of) == len(rooms)
        await trio.sleep(1.0)  # every leave handled: the rooms are parked
        received = [actor.mailbox.statistics().received for actor in actors_of]
        await trio.sleep(298.0)  # virtual time: just short of the TTL
        assert [actor.mailbox.statistics().received for actor in actors_of] == received
        assert [room_address(server, room) for room in rooms] == addresses
        await trio.sleep(2.0)  # the TTL: each room wakes once, and stops
        assert [room_address(server, room) for room in rooms] == [None] * len(rooms)
