"""Clients that misbehave after the upgrade: each is dropped (or closed with the code it earned)
and a second client is served all the while.

Hand-built bad frames one at a time (1002, 1007, 1009) are in ``tests/server/test_close_codes``;
here are the clients that misbehave over time: resets, floods, endless fragments, silence.
Timers run on the ``virtual_clock``.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import attrs
import pytest
import trio
import trio.testing
import wsproto.events as ev
from wsproto.frame_protocol import Opcode

from server import (
    App,
    Binary,
    ClientClosed,
    ConnectionOptions,
    Frame,
    IdleTimeout,
    ProtocolError,
    SlowClient,
    Text,
    websocket,
)

from ..server.kit import (
    Recorded,
    Terminations,
    assert_echoes,
    frame,
    raw_client,
    running,
    until_quiet,
    warnings_logged,
)

MAX_MESSAGE = 4096
FLOOD_FRAME = b"x" * 2**16
FLOOD_FRAMES = 512
"""32 MiB in all: more than loopback's socket buffers hold, so the writer must block."""

IDLE_TIMEOUT = 0.5
SEND_TIMEOUT = 1.0
LIMITED = ConnectionOptions(
    max_message_size=MAX_MESSAGE,
    idle_timeout=IDLE_TIMEOUT,
    send_timeout=SEND_TIMEOUT,
    close_timeout=1.0,
    outbox_capacity=4,
)
SLOW_READER = attrs.evolve(LIMITED, idle_timeout=None)
"""For the client that stops reading: only the send timeout may drop it."""


class Flooder(Recorded):
    """Echoes; the text "flood" sends FLOOD_FRAMES binary frames back instead."""

    def websocket_handle(self, frame: Frame, state: None) -> tuple[Any, None]:
        if isinstance(frame, Text) and frame.data == "flood":
            return [Binary(FLOOD_FRAME)] * FLOOD_FRAMES, state
        return frame, state


def recorded_app(log: Terminations) -> App:
    """``/bad``, ``/limited`` and ``/slow`` report to ``log``; ``/`` is for the others."""
    others = Terminations()
    return App(
        [
            websocket("/", Flooder(others)),
            websocket("/bad", Flooder(log)),
            websocket("/limited", Flooder(log), options=LIMITED),
            websocket("/slow", Flooder(log), options=SLOW_READER),
        ]
    )


async def test_client_reset_mid_frame_ends_as_remote_1006(caplog: pytest.LogCaptureFixture) -> None:
    log = Terminations()
    async with running(recorded_app(log)) as served:
        baseline = served.live_actors()
        async with raw_client(served.port, "/bad") as client:
            await client.send(ev.TextMessage("before"))
            assert await client.next_event() == ev.TextMessage("before")
            whole = frame(Opcode.BINARY, b"y" * 1000)
            await client.send_raw(whole[: len(whole) // 2])  # header and half the payload
            await until_quiet()  # the server has read the half and waits for the rest
            client.reset()
            reason = (await log.one()).reason
        assert reason == ClientClosed(1006) and reason.abrupt
        await served.until_no_connections()
        assert served.live_actors() == baseline
        await assert_echoes(served.url())
    assert warnings_logged(caplog) == []


async def test_client_that_stops_reading_is_dropped_after_send_timeout(
    virtual_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    log = Terminations()
    async with (
        running(recorded_app(log)) as served,
        raw_client(served.port, "/slow", receive_buffer=4096) as slow,
    ):
        started = trio.current_time()
        await slow.send(ev.TextMessage("flood"))
        await until_quiet()  # the server is now stuck writing to `slow`...
        await assert_echoes(served.url())  # ...and serves another client meanwhile
        reason = (await log.one()).reason
        elapsed = trio.current_time() - started
        assert reason == SlowClient("send timed out: the client stopped reading", 1006)
        assert SEND_TIMEOUT <= elapsed < SEND_TIMEOUT + 0.1
        # What the client sees once it reads again: some of the flood, then TCP ends, no close.
        events = await slow.eof()
        assert {type(event) for event in events} == {ev.BytesMessage}  # TCP was aborted
        received = sum(len(event.data) for event in events if isinstance(event, ev.BytesMessage))
        assert 0 < received < len(FLOOD_FRAME) * FLOOD_FRAMES
        await assert_echoes(served.url())
    assert warnings_logged(caplog) == []


async def test_fragments_that_never_end_are_cut_at_max_message_size_with_1009(
    virtual_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Fragments count as activity, so the idle timeout never fires: the size limit does."""
    log = Terminations()
    fragment = b"f" * 512
    async with running(recorded_app(log)) as served:
        async with raw_client(served.port, "/limited") as client:
            await client.send_raw(frame(Opcode.TEXT, fragment, fin=False))
            sent = len(fragment)
            while sent <= MAX_MESSAGE:
                await trio.sleep(IDLE_TIMEOUT / 5)  # slow, but never idle
                try:
                    await client.send_raw(frame(Opcode.CONTINUATION, fragment, fin=False))
                except trio.BrokenResourceError:
                    break  # closed before the limit: the check below fails
                sent += len(fragment)
            assert (await client.close_event()).code == 1009
        assert sent > MAX_MESSAGE >= sent - len(fragment)  # cut at the limit, not before
        reason = (await log.one()).reason
        assert isinstance(reason, ProtocolError) and reason.code == 1009
        await assert_echoes(served.url())
    assert warnings_logged(caplog) == []


async def test_a_fragment_then_silence_closes_at_the_idle_timeout_with_1000(
    virtual_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    log = Terminations()
    async with running(recorded_app(log)) as served:
        async with raw_client(served.port, "/limited") as client:
            started = trio.current_time()
            await client.send_raw(frame(Opcode.TEXT, b"never finished", fin=False))
            assert (await client.close_event()).code == 1000
            assert trio.current_time() - started == pytest.approx(IDLE_TIMEOUT, abs=0.01)
        assert (await log.one()).reason == IdleTimeout()
        await assert_echoes(served.url())
    assert warnings_logged(caplog) == []


async def test_many_abrupt_clients_leave_no_connection_behind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = Terminations()
    async with running(recorded_app(log)) as served:
        baseline = served.live_actors()
        async with AsyncExitStack() as stack:
            clients = [
                await stack.enter_async_context(raw_client(served.port, "/bad")) for _ in range(50)
            ]
            for client in clients[::2]:
                await client.send_raw(frame(Opcode.TEXT, b"half")[:5])
            for client in clients:
                client.reset()
            await log.wait(len(clients))
        assert set(log.reasons) == {ClientClosed(1006)}
        await served.until_no_connections()
        assert served.live_actors() == baseline
        await assert_echoes(served.url())
    assert warnings_logged(caplog) == []
