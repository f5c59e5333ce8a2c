"""Everything corral needs from trio-websocket 0.12.2's internals, in one place.

- ``CorralWebSocket`` sends a close frame with the right code (1002, 1007) when wsproto
  finds a protocol error; trio-websocket just drops the TCP connection.
- ``send_encoded`` writes frame bytes built once for many connections (fan-out), through
  the connection's own stream lock so they never interleave with its other writes.
- ``write_now`` puts a whole frame straight on an idle socket without waiting (no task
  switch per frame); what the socket does not take at once is kept as ``pending`` and
  written before anything else, by whichever write comes next, under the lock.
tests/server/test_wire.py pins the version, so an upgrade fails there first.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

import trio
import trio_websocket
import wsproto.events
from trio_websocket import CloseReason, ConnectionClosed
from wsproto.connection import ConnectionState
from wsproto.frame_protocol import FrameProtocol

PINNED_TRIO_WEBSOCKET = "0.12.2"
_MAX_CLOSE_REASON_BYTES = 123


class CorralWebSocket(trio_websocket.WebSocketConnection):
    """trio-websocket's connection, closing protocol errors with a proper close frame."""

    protocol_error: CloseReason | None = None
    """Set when the server closed the connection because the client broke the protocol."""
    pending: bytes = b""
    """The unsent tail of a frame ``write_now`` started: it goes out before anything else."""

    async def _send(self, event: wsproto.events.Event) -> None:
        if self.pending:
            await send_encoded(self, b"")
        await super()._send(event)

    async def _handle_close_connection_event(self, event: wsproto.events.CloseConnection) -> None:
        if self._wsproto.state is ConnectionState.OPEN:
            # The peer sent no close frame: wsproto made this event from a frame it
            # could not parse (bad opcode, bad UTF-8...). Tell the client before closing.
            self.protocol_error = CloseReason(event.code, event.reason or None)
            # Closed from now on (as trio-websocket does before its own close frames): a
            # writer that sent a frame while ours goes out would make wsproto raise.
            self._close_reason = self.protocol_error
            reason = _short(event.reason or "")
            try:
                await self._send(wsproto.events.CloseConnection(code=event.code, reason=reason))
            except ConnectionClosed:
                pass
        await super()._handle_close_connection_event(event)

    async def _handle_message_event(
        self, event: wsproto.events.BytesMessage | wsproto.events.TextMessage
    ) -> None:
        if self._message_size + len(event.data) > self._max_message_size:
            # trio-websocket is about to close with 1009 for a too-big message. Say so
            # first: closing its channel wakes get_message before the call below returns.
            if self.protocol_error is None:
                limit = self._max_message_size
                self.protocol_error = CloseReason(
                    1009, f"Exceeded maximum message size: {limit} bytes"
                )
            await super()._handle_message_event(event)
            # Its reader then waits for more bytes before it stops: end the messages now.
            await self._send_channel.aclose()
            return
        await super()._handle_message_event(event)


class MessageSink:
    """Stands in for trio-websocket's internal message channel (``_send_channel``).

    Each message its reader task assembles goes straight to the connection's own queue,
    so the reader is the connection's drain: no extra task, no extra hop per message.
    ``ended`` runs once, when trio-websocket closes its side (the close reason is set).
    Messages that arrive before ``bind`` wait for it.
    """

    def __init__(self) -> None:
        self._closed = False
        self._deliver: Callable[[str | bytes], Awaitable[None]] | None = None
        self._ended: Callable[[], Awaitable[None]] | None = None
        self._bound: trio.Event | None = None  # made only if the reader comes before bind

    def bind(
        self,
        deliver: Callable[[str | bytes], Awaitable[None]],
        ended: Callable[[], Awaitable[None]],
    ) -> None:
        """Where messages go, and what to call when the connection's reading side ends."""
        self._deliver, self._ended = deliver, ended
        if self._bound is not None:
            self._bound.set()
            self._bound = None

    async def _wait_bound(self) -> None:
        if self._deliver is None:
            if self._bound is None:
                self._bound = trio.Event()
            await self._bound.wait()

    async def send(self, message: str | bytes) -> None:
        if self._deliver is None:  # checked here: an await per message would cost on every one
            await self._wait_bound()
        if self._closed:
            raise trio.ClosedResourceError("the connection's messages were closed")
        assert self._deliver is not None
        await self._deliver(message)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._wait_bound()
        assert self._ended is not None
        await self._ended()

    async def __aenter__(self) -> MessageSink:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


_NO_MESSAGES: trio.MemoryReceiveChannel[str | bytes] = trio.open_memory_channel[str | bytes](0)[1]
_NO_MESSAGES.close()
"""What ``get_message`` reads on a connection whose messages go to a sink: nothing, ever."""


def wrap_server_stream(
    nursery: trio.Nursery,
    stream: trio.abc.Stream,
    *,
    message_queue_size: int,
    max_message_size: int,
    sink: MessageSink | None = None,
) -> CorralWebSocket:
    """trio_websocket.wrap_server_stream's first half, with our connection class.

    With ``sink``, received messages go to it instead of ``get_message()``.
    """
    connection = CorralWebSocket(
        stream,
        wsproto.WSConnection(wsproto.ConnectionType.SERVER),
        message_queue_size=message_queue_size,
        max_message_size=max_message_size,
    )
    if sink is not None:
        connection._send_channel = sink  # type: ignore[assignment]
        # Its own channel would be kept, unused, by the receiving end: a closed one stands in.
        connection._recv_channel = _NO_MESSAGES
    nursery.start_soon(connection._reader_task)
    return connection


async def get_request(connection: CorralWebSocket) -> trio_websocket.WebSocketRequest:
    """Wait for the handshake request that the reader task parses."""
    return await connection._get_request()


# One encoder serves every connection: unmasked, uncompressed, whole frames keep no state.
_ENCODER = FrameProtocol(client=False, extensions=[])


def encode_message(message: str | bytes) -> bytes:
    """The bytes of one unmasked, uncompressed server frame carrying ``message``."""
    return bytes(_ENCODER.send_data(message, fin=True))


def encode_ping(payload: bytes) -> bytes:
    """The bytes of a server ping frame."""
    return bytes(_ENCODER.ping(payload))


def encode_pong(payload: bytes) -> bytes:
    """The bytes of a server pong frame."""
    return bytes(_ENCODER.pong(payload))


def is_compressed(connection: trio_websocket.WebSocketConnection) -> bool:
    """Whether permessage-deflate was negotiated (pre-encoded frames cannot be used then)."""
    established = connection._wsproto.connection
    return established is not None and bool(established._proto.extensions)


def set_max_message_size(connection: trio_websocket.WebSocketConnection, size: int) -> None:
    """Change the size over which a received message closes the connection with 1009."""
    connection._max_message_size = size


async def send_encoded(connection: CorralWebSocket, data: bytes) -> None:
    """Write pre-encoded frame bytes (after any pending tail) as trio-websocket's ``_send``."""
    if connection._close_reason:
        raise ConnectionClosed(connection._close_reason)
    async with connection._stream_lock:
        data, connection.pending = connection.pending + data, b""
        try:
            await connection._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            await connection._abort_web_socket()
            assert connection._close_reason is not None
            raise ConnectionClosed(connection._close_reason) from None


def socket_fd(stream: trio.abc.Stream) -> int | None:
    """The file descriptor of a plain TCP stream, for ``write_now`` (None for TLS and others)."""
    return stream.socket.fileno() if isinstance(stream, trio.SocketStream) else None


def write_now(connection: CorralWebSocket, fd: int, data: bytes) -> bool:
    """Write a whole frame to an idle socket without waiting; False if it is not idle.

    Idle means nobody holds the stream lock and no tail is pending, so these bytes cannot
    land inside another frame. A tail the socket does not take at once becomes ``pending``.
    A broken socket takes the frame and loses it; the connection's reader reports how it ended.
    """
    if connection.pending or connection._stream_lock.locked() or connection._close_reason:
        return False
    try:
        sent = os.write(fd, data)
    except BlockingIOError:
        return False
    except OSError:
        return True
    connection.pending = data[sent:]
    return True


def _short(reason: str) -> str:
    encoded = reason.encode()
    if len(encoded) <= _MAX_CLOSE_REASON_BYTES:
        return reason
    return encoded[:_MAX_CLOSE_REASON_BYTES].decode(errors="ignore")
