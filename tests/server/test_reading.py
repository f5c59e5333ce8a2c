"""How a connection reads its client: when its handler is free (backpressure), and never stuck at
the end."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest
import trio
import trio.testing
import wsproto.events as ev
from trio_websocket import ConnectionClosed
from websockets.frames import Opcode

import actors
from server import (
    App,
    ConnectionOptions,
    Frame,
    HandlerStopped,
    ServerOptions,
    Stop,
    Text,
    WebSocketHandler,
    websocket,
)

from .kit import (
    Recorded,
    Terminations,
    client,
    frame,
    raw_client,
    running_clean,
    until_quiet,
)

FLOOD = 40
"""Frames sent while the handler is busy: they wait, unread, in the sockets' buffers."""


class StopsWhenReleased(Recorded):
    """The first frame blocks its handler until the test says, then stops the connection."""

    release = trio.Event()

    async def websocket_handle(self, frame: Frame, state: Any) -> tuple[Any, Any]:
        await self.release.wait()
        return Stop(), state


async def test_a_connection_that_stops_with_frames_unread_still_finishes_its_close(
    virtual_clock: trio.testing.MockClock,
) -> None:
    log = Terminations()
    StopsWhenReleased.release = trio.Event()
    options = ConnectionOptions(close_timeout=5.0)
    app = App([websocket("/", StopsWhenReleased(log))])
    async with running_clean(app, ServerOptions(connection=options)) as served:
        async with client(served.url()) as ws:
            for number in range(FLOOD):
                await ws.send_message(f"frame {number}")
            await trio.testing.wait_all_tasks_blocked()
            released_at = trio.current_time()
            StopsWhenReleased.release.set()
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
            assert closed.value.reason.code == 1000
            call = await log.one()
        assert call.reason == HandlerStopped()
        # The frames before the client's close reply were read and dropped: no wait for
        # close_timeout, then an abort.
        assert trio.current_time() - released_at < options.close_timeout


class AwaitsInEveryCallback(WebSocketHandler[Any]):
    """Async callbacks that checkpoint: a stray cancellation would cut them short."""

    async def websocket_handle(self, frame: Frame, state: Any) -> tuple[Text, Any]:
        await trio.lowlevel.checkpoint()
        assert isinstance(frame, Text)
        return Text(f"handled {frame.data}"), state

    async def websocket_info(self, message: Any, state: Any) -> tuple[Text, Any]:
        await trio.lowlevel.checkpoint()
        return Text(f"info {message}"), state


RACES = 24
"""Tries at the race: each wins it with even odds (trio runs a batch in either order)."""


async def test_a_message_arriving_as_the_wait_ends_interrupts_nothing_after_it() -> None:
    """The client's frame ends the connection's wait; in the same scheduler batch, before the
    connection runs, a mailbox message tries to interrupt that finished wait. The frame's
    callback and the message's must both run in full, the frame's first."""
    noted: list[actors.Address] = []

    class Noted(AwaitsInEveryCallback):
        async def websocket_init(self, state: Any) -> tuple[None, Any]:
            noted.append(actors.self_address())
            return None, state

    app = App([websocket("/", Noted())])
    bell, ringer = socket.socketpair()
    with bell, ringer:
        bell.setblocking(False)
        async with running_clean(app) as served, raw_client(served.port) as ws:
            await until_quiet()  # websocket_init has run
            (address,) = noted
            sent = 0

            async def send_when_the_bell_rings() -> None:
                nonlocal sent
                while sent < RACES:
                    await trio.lowlevel.wait_readable(bell)
                    bell.recv(1)
                    served.node.send(address, f"message {sent}")
                    sent += 1

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_when_the_bell_rings)
                for number in range(RACES):
                    # Both in one step: the next poll wakes the connection and the bell together.
                    os.write(
                        ws.stream.socket.fileno(), frame(Opcode.TEXT, f"frame {number}".encode())
                    )
                    ringer.send(b"!")
                    assert await ws.message() == f"handled frame {number}"
                    assert await ws.message() == f"info message {number}"


class Silent(Recorded):
    """Answers nothing: whatever the client gets comes from the protocol itself."""


async def test_a_ping_from_an_idle_client_is_answered_at_once() -> None:
    app = App([websocket("/", Silent(Terminations()))])
    async with running_clean(app) as served, raw_client(served.port) as pinger:
        for number in range(3):  # each pong is written before the connection waits again
            payload = f"ping {number}".encode()
            await pinger.send_raw(frame(Opcode.PING, payload))
            with trio.fail_after(2):
                pong = await pinger.next_event()
            assert isinstance(pong, ev.Pong) and pong.payload == payload
