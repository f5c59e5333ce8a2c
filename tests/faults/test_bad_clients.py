"""Clients that misbehave after the upgrade: each is dropped (or closed with the code it earned)
and a second client is served all the while.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
import pytest
import trio
from wsproto.frame_protocol import Opcode

from server import (
    App,
    Binary,
    ConnectionOptions,
    Frame,
    IdleTimeout,
    Overflow,
    ProtocolError,
    Remote,
    Request,
    TerminateReason,
    Text,
    WebSocketHandler,
    websocket,
)

from ..server.serving import Served, running
from .kit import (
    STEP_TIMEOUT,
    RawClient,
    Recorder,
    assert_echoes,
    client_frame,
    wait_until_no_connections,
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


class Recorded(WebSocketHandler[None]):
    """Echoes; the text "flood" sends FLOOD_FRAMES binary frames back instead."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def websocket_handle(self, frame: Frame, state: None) -> tuple[Any, None]:
        if isinstance(frame, Text) and frame.data == "flood":
            return [Binary(FLOOD_FRAME)] * FLOOD_FRAMES, state
        return frame, state

    def terminate(self, reason: TerminateReason, request: Request, state: None) -> None:
        self.recorder.terminated(reason)


def recorded_app(recorder: Recorder) -> App:
    """``/bad``, ``/limited`` and ``/slow`` report to ``recorder``; ``/`` is for the others."""
    others = Recorder()

    def factory() -> Recorded:
        return Recorded(recorder)

    return App(
        [
            websocket("/", lambda: Recorded(others)),
            websocket("/bad", factory),
            websocket("/limited", factory, options=LIMITED),
            websocket("/slow", factory, options=SLOW_READER),
        ]
    )


def unexpected_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


async def echo_raw(client: RawClient, text: str) -> None:
    """One round trip on a raw client (proves it is upgraded and served)."""
    await client.send(client_frame(Opcode.TEXT, text.encode()))
    frame = await client.next_frame()
    assert frame is not None and frame.opcode is Opcode.TEXT and frame.payload == text


async def test_client_reset_mid_frame_ends_as_remote_1006(caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder()
    async with running(recorded_app(recorder)) as server:
        baseline = server.live_actors()
        client = await RawClient.upgraded(server.port, "/bad")
        await echo_raw(client, "before")
        whole = client_frame(Opcode.BINARY, b"y" * 1000)
        await client.send(whole[: len(whole) // 2])  # header and half the payload
        await trio.sleep(0.05)
        client.reset()
        [reason] = await recorder.wait_for(1)
        assert reason == Remote(1006) and reason.abrupt
        await wait_until_no_connections(server)
        assert server.live_actors() == baseline
        await assert_echoes(server.url())
    assert unexpected_logs(caplog) == []


async def test_client_that_stops_reading_is_dropped_after_send_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder()
    async with running(recorded_app(recorder)) as server:
        slow = await RawClient.upgraded(server.port, "/slow", receive_buffer=4096)
        started = trio.current_time()
        await slow.send(client_frame(Opcode.TEXT, b"flood"))
        await trio.sleep(0.2)  # the server is now stuck writing to `slow`
        await assert_echoes(server.url())  # ...and serves another client meanwhile
        [reason] = await recorder.wait_for(1, timeout=SEND_TIMEOUT + STEP_TIMEOUT)
        elapsed = trio.current_time() - started
        assert reason == Overflow("send timed out: the client stopped reading", 1006)
        assert SEND_TIMEOUT <= elapsed < SEND_TIMEOUT + 2.0
        # What the client sees once it reads again: some of the flood, then TCP ends, no close.
        opcodes = set()
        received = 0
        while (frame := await slow.next_frame()) is not None:
            opcodes.add(frame.opcode)
            received += len(frame.payload)
        assert opcodes == {Opcode.BINARY}  # no close frame: TCP was aborted
        assert 0 < received < len(FLOOD_FRAME) * FLOOD_FRAMES
        await slow.aclose()
        await assert_echoes(server.url())
    assert unexpected_logs(caplog) == []


async def test_message_over_the_size_limit_closes_with_1009(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder()
    async with running(recorded_app(recorder)) as server:
        client = await RawClient.upgraded(server.port, "/limited")
        await client.send(client_frame(Opcode.BINARY, b"z" * (MAX_MESSAGE + 1)))
        assert await client.close_code() == 1009
        assert await client.closed_by_server()
        [reason] = await recorder.wait_for(1)
        assert isinstance(reason, ProtocolError) and reason.code == 1009
        await assert_echoes(server.url())
    assert unexpected_logs(caplog) == []


async def test_invalid_utf8_in_a_text_frame_closes_with_1007(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder()
    async with running(recorded_app(recorder)) as server:
        client = await RawClient.upgraded(server.port, "/bad")
        await client.send(client_frame(Opcode.TEXT, b"caf\xc3\x28 \xff"))
        assert await client.close_code() == 1007
        assert await client.closed_by_server()
        [reason] = await recorder.wait_for(1)
        assert isinstance(reason, ProtocolError) and reason.code == 1007
        await assert_echoes(server.url())
    assert unexpected_logs(caplog) == []


async def test_fragments_that_never_end_are_cut_at_max_message_size_with_1009(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Fragments count as activity, so the idle timeout never fires: the size limit does."""
    recorder = Recorder()
    fragment = b"f" * 512
    async with running(recorded_app(recorder)) as server:
        client = await RawClient.upgraded(server.port, "/limited")
        await client.send(client_frame(Opcode.TEXT, fragment, fin=False))
        sent = len(fragment)
        code = None
        with trio.fail_after(STEP_TIMEOUT):
            for _ in range(4 * MAX_MESSAGE // len(fragment)):
                await trio.sleep(IDLE_TIMEOUT / 5)  # slow, but never idle
                try:
                    await client.send(client_frame(Opcode.CONTINUATION, fragment, fin=False))
                except trio.BrokenResourceError:
                    break
                sent += len(fragment)
                if sent > MAX_MESSAGE:
                    break
            code = await client.close_code()
        assert code == 1009
        assert sent > MAX_MESSAGE >= sent - len(fragment)  # cut at the limit, not before
        [reason] = await recorder.wait_for(1)
        assert isinstance(reason, ProtocolError) and reason.code == 1009
        await assert_echoes(server.url())
    assert unexpected_logs(caplog) == []


async def test_a_fragment_then_silence_closes_at_the_idle_timeout_with_1000(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder()
    async with running(recorded_app(recorder)) as server:
        client = await RawClient.upgraded(server.port, "/limited")
        started = trio.current_time()
        await client.send(client_frame(Opcode.TEXT, b"never finished", fin=False))
        assert await client.close_code() == 1000
        elapsed = trio.current_time() - started
        assert IDLE_TIMEOUT <= elapsed < IDLE_TIMEOUT + 1.0
        [reason] = await recorder.wait_for(1)
        assert reason == IdleTimeout()
        await assert_echoes(server.url())
    assert unexpected_logs(caplog) == []


async def test_many_abrupt_clients_leave_no_connection_behind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder()
    async with running(recorded_app(recorder)) as server:
        baseline = server.live_actors()
        clients = [await RawClient.upgraded(server.port, "/bad") for _ in range(50)]
        for client in clients[::2]:
            await client.send(client_frame(Opcode.TEXT, b"half")[:5])
        for client in clients:
            client.reset()
        reasons = await recorder.wait_for(len(clients))
        assert set(reasons) == {Remote(1006)}
        await _settled(server, baseline)
        await assert_echoes(server.url())
    assert unexpected_logs(caplog) == []


async def _settled(server: Served, baseline: int) -> None:
    await wait_until_no_connections(server)
    assert server.live_actors() == baseline


def _unmasked(opcode: Opcode, payload: bytes) -> bytes:
    return bytes([0x80 | int(opcode), len(payload)]) + payload


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(_unmasked(Opcode.TEXT, b"no mask"), id="unmasked"),
        pytest.param(bytes([0x83, 0x80]) + b"\x00\x00\x00\x00", id="reserved-opcode"),
        pytest.param(bytes([0xC1, 0x80]) + b"\x00\x00\x00\x00", id="rsv1-without-extension"),
        pytest.param(client_frame(Opcode.PING, b"p", fin=False), id="fragmented-ping"),
        pytest.param(
            bytes([0x89, 0x80 | 126]) + (200).to_bytes(2, "big") + bytes(4 + 200),
            id="ping-over-125-bytes",
        ),
        pytest.param(client_frame(Opcode.CONTINUATION, b"orphan"), id="orphan-continuation"),
        pytest.param(
            client_frame(Opcode.TEXT, b"a", fin=False) + client_frame(Opcode.TEXT, b"b"),
            id="new-message-inside-fragments",
        ),
        pytest.param(client_frame(Opcode.CLOSE, (999).to_bytes(2, "big")), id="close-code-999"),
        pytest.param(client_frame(Opcode.CLOSE, (1005).to_bytes(2, "big")), id="close-code-1005"),
        pytest.param(client_frame(Opcode.CLOSE, b"\x03"), id="close-one-byte"),
    ],
)
async def test_protocol_violations_close_with_1002(
    caplog: pytest.LogCaptureFixture, frame: bytes
) -> None:
    recorder = Recorder()
    async with running(recorded_app(recorder)) as server:
        client = await RawClient.upgraded(server.port, "/bad")
        await client.send(frame)
        assert await client.close_code() == 1002
        assert await client.closed_by_server()
        [reason] = await recorder.wait_for(1)
        assert isinstance(reason, ProtocolError) and reason.code == 1002
        await assert_echoes(server.url())
    assert unexpected_logs(caplog) == []
