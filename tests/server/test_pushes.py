"""Frames other tasks push to a connection (``broadcast``, a synchronous ``websocket_info``): held
until the pushing task step is over, then written together, in order with the connection's own
writes, within the outbox's bounds and policies."""

from __future__ import annotations

import os
import select
from typing import Any

import trio
import trio.testing
from websockets.frames import Opcode

import actors
from server import (
    App,
    ConnectionOptions,
    Frame,
    OutboxPolicy,
    Text,
    broadcast,
    websocket,
)
from server.engine.step_writes import step_writes_of

from .kit import RawClient, Recorded, Terminations, frame, raw_client, running_clean, until_quiet

GROUP = "members"
BURST = 50
"""Frames broadcast in one task step: more than the small outboxes below hold."""


class Member(Recorded):
    """Joins the group; answers a client frame with its own two frames, after broadcasting it."""

    def websocket_init(self, state: Any) -> tuple[Text, Any]:
        actors.join(GROUP)
        return Text("joined"), state

    def websocket_handle(self, frame: Frame, state: Any) -> tuple[list[Text], Any]:
        assert isinstance(frame, Text)
        broadcast(GROUP, f"pushed {frame.data}")
        return [Text(f"own {frame.data}"), Text("own again")], state

    def websocket_info(self, message: Any, state: Any) -> tuple[Text, Any]:
        return Text(f"info {message}"), state


def member_app(options: ConnectionOptions | None = None) -> App:
    return App([websocket("/", Member(Terminations()), options=options)])


def has_bytes(member: RawClient) -> bool:
    """Whether the server has written anything the client has not read (loopback delivers a
    write at once)."""
    readable, _, _ = select.select([member.stream.socket.fileno()], [], [], 0)
    return bool(readable)


async def test_held_writes_run_once_in_order_when_the_step_is_over() -> None:
    ran: list[int] = []
    async with actors.open_node() as node:
        writes = step_writes_of(node)
        writes.add(lambda: ran.append(1), node.timers)
        writes.add(lambda: ran.append(2), node.timers)
        assert ran == []
        await trio.testing.wait_all_tasks_blocked()
        assert ran == [1, 2]
        writes.add(lambda: ran.append(3), node.timers)  # a later step: its own pass
        await trio.testing.wait_all_tasks_blocked()
    assert ran == [1, 2, 3]


async def test_frames_broadcast_in_one_step_leave_when_it_ends_all_in_order() -> None:
    async with running_clean(member_app()) as served, raw_client(served.port) as member:
        assert await member.message() == "joined"
        taken = [broadcast(GROUP, f"frame {number}", node=served.node) for number in range(BURST)]
        assert not has_bytes(member)  # held while this step runs
        assert taken == [1] * BURST
        for number in range(BURST):
            assert await member.message() == f"frame {number}"


async def test_a_burst_bigger_than_the_outbox_is_written_not_dropped_when_the_client_reads() -> (
    None
):
    options = ConnectionOptions(outbox_capacity=4, outbox_overflow=OutboxPolicy.DROP)
    async with running_clean(member_app(options)) as served, raw_client(served.port) as member:
        assert await member.message() == "joined"
        taken = sum(
            broadcast(GROUP, f"frame {number}", node=served.node) for number in range(BURST)
        )
        assert taken == BURST  # a full hold is written at once, making room
        for number in range(BURST):
            assert await member.message() == f"frame {number}"


async def test_the_connections_own_frames_go_after_those_held_for_it() -> None:
    async with running_clean(member_app()) as served, raw_client(served.port) as member:
        assert await member.message() == "joined"
        for word in ("a", "b"):
            await member.send_raw(frame(Opcode.TEXT, word.encode()))
            assert [await member.message() for _ in range(3)] == [
                f"pushed {word}",  # broadcast first, to itself among others
                f"own {word}",
                "own again",
            ]


RACES = 24
"""Tries at the race: each wins it with even odds (trio runs a batch in either order)."""


async def test_an_info_frame_held_goes_before_the_reply_to_a_frame_read_after_it() -> None:
    """A message handled in the sender's task (a synchronous ``websocket_info``) while the
    client's frame waits unread: the info's frame is held, and the connection, reading the
    frame in the next pass, writes what is held before its reply, whichever runs first."""
    async with running_clean(member_app()) as served, raw_client(served.port) as member:
        assert await member.message() == "joined"
        (address,) = served.node.local_members(GROUP)
        for number in range(RACES):
            await until_quiet()  # the connection waits for its client
            # Both in one step: the frame lands unread, the message is handled at once.
            os.write(member.stream.socket.fileno(), frame(Opcode.TEXT, f"{number}".encode()))
            served.node.send(address, f"message {number}")
            assert [await member.message() for _ in range(4)] == [
                f"info message {number}",
                f"pushed {number}",
                f"own {number}",
                "own again",
            ]
