"""One WebSocket connection's protocol, apart from I/O (h11's manner): bytes in, events out.

``Session`` splits the client's bytes into frames and hands each one, whole, to websockets'
Sans-I/O ``Protocol``, which owns framing rules, control frames, the close handshake and
permessage-deflate. One narrow fast path skips it: a complete, unfragmented, uncompressed,
masked text or binary frame between messages is unmasked with websockets' C helper and
decoded here (``decode_simple_frame``); the library never needs to see it, since it keeps no
state between messages. So is a ping or pong between messages (a ping gets its pong, as the
library would answer it). The library is made on first need (a fragment, compression, a
close, a control frame inside a message), so an idle connection holds none.

Events are parsed on demand, one per ``next_event`` call, so the handler sees the client's
frames in order with what they cause (a close after a message ends the connection after
that message is handled, as Cowboy does).
"""

from __future__ import annotations

import codecs
import logging
import struct
from collections.abc import Sequence
from typing import Final

from websockets.extensions import Extension
from websockets.frames import Frame, Opcode
from websockets.protocol import CLOSED, OPEN, Protocol, Side

from .commands import Binary, Text, wire_binary, wire_text
from .termination import ClientClosed, ProtocolError, TerminateReason

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets built without its C extension
    from websockets.utils import apply_mask

NEED_DATA: Final = None
"""``next_event``'s answer when no whole event is buffered: read more from the client."""

_FIN_TEXT, _FIN_BINARY = 0x81, 0x82
"""First header byte of an unfragmented text/binary frame with no reserved bit set."""
_FIN_PING, _FIN_PONG = 0x89, 0x8A
"""First header byte of a ping/pong with no reserved bit set."""
_MAX_CONTROL_PAYLOAD = 125
"""RFC 6455 §5.5: a control frame's payload is at most this long."""
_MASKED = 0x80
_NO_EXTENSIONS: tuple[Extension, ...] = ()

_PROTOCOL_LOGGER = logging.getLogger("corral.server.protocol")
"""websockets' own log lines for each connection ("connection closed" at INFO for every one):
quiet unless asked for, since corral logs one line per close itself."""
_PROTOCOL_LOGGER.setLevel(logging.WARNING)


class Session:
    """The protocol state of one server-side connection (RFC 6455), fed by the caller.

    - ``receive_data(bytes)`` / ``receive_eof()``: what the client sent;
    - ``next_event()``: the next ``Text``/``Binary`` message, NEED_DATA, or the
      ``TerminateReason`` the client caused (close frame, protocol error, EOF); call it until
      NEED_DATA before reading more;
    - ``encode(frame)``, ``close(code, reason)``: frames to send;
    - ``data_to_send()``: bytes the protocol itself owes the client (pongs, close replies);
    - ``transport_done``: the close handshake is over on the server's side: close TCP.
    """

    __slots__ = (
        "max_message_size",
        "extensions",
        "ended",
        "closing",
        "transport_done",
        "_buffer",
        "_protocol",
        "_fragments",
        "_fragment_text",
        "_utf8",
        "_writes",
        "owes",
    )

    def __init__(
        self, *, max_message_size: int, extensions: Sequence[Extension] = _NO_EXTENSIONS
    ) -> None:
        self.max_message_size = max_message_size
        self.extensions = tuple(extensions) if extensions else _NO_EXTENSIONS
        self.ended: TerminateReason | None = None
        """Why the client's side ended (close frame, protocol error, EOF), once it has."""
        self.closing = False
        """True once the server sent its close frame: later frames are not sent."""
        self.transport_done = False
        self._buffer: bytes | bytearray = b""
        self._protocol: Protocol | None = None
        self._fragments: list[bytes] | None = None  # a fragmented message being assembled
        self._fragment_text = False
        self._utf8: codecs.IncrementalDecoder | None = None
        self._writes: list[bytes] | None = None
        self.owes = False
        """Whether ``data_to_send`` has bytes (pongs, a close reply)."""

    # ---- in -------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes from the client, appended to what is still unparsed."""
        buffer = self._buffer
        if not buffer:
            self._buffer = data
        elif isinstance(buffer, bytearray):
            buffer += data
        else:
            self._buffer = bytearray(buffer) + data

    def receive_eof(self) -> None:
        """The client closed its side of TCP."""
        if self.ended is not None:
            return
        protocol = self._library()
        protocol.receive_eof()
        self._collect(protocol)
        if self.ended is None:  # a close handshake completed: the EOF ends nothing new
            self.ended = ClientClosed(1006)

    def next_event(self) -> Text | Binary | TerminateReason | None:
        """The next whole message, the reason the client's side ended, or NEED_DATA."""
        while self.ended is None:
            buffer = self._buffer
            size = len(buffer)
            if size < 2:
                return NEED_DATA
            first, second = buffer[0], buffer[1]
            length = second & 0x7F
            start = 2
            if length == 126:
                if size < 4:
                    return NEED_DATA
                length, start = int.from_bytes(buffer[2:4], "big"), 4
            elif length == 127:
                if size < 10:
                    return NEED_DATA
                length, start = int.from_bytes(buffer[2:10], "big"), 10
            if length > self._room():  # refused at the header, before any payload is read
                self._buffer = b""
                self._through_library(bytes(buffer[:start]))  # its verdict, its words
                return self.ended or self._fail(1009, "message too big")
            end = start + (4 if second & _MASKED else 0) + length
            if size < end:
                return NEED_DATA
            if (
                (first == _FIN_TEXT or first == _FIN_BINARY)
                and second & _MASKED
                and self._fragments is None
                and not self.closing
            ):
                message = decode_simple_frame(buffer, start, end)
                self._buffer = buffer[end:] if size > end else b""
                if message is not None:
                    return message
                return self._fail(1007, "invalid UTF-8 in a text message")
            if (
                (first == _FIN_PING or first == _FIN_PONG)
                and second & _MASKED
                and length <= _MAX_CONTROL_PAYLOAD
                and self._protocol is None
                and not self.closing
            ):
                if first == _FIN_PING:  # answered as websockets would; a pong needs nothing
                    self._owe(
                        encode_pong(apply_mask(buffer[start + 4 : end], buffer[start : start + 4]))
                    )
                self._buffer = buffer[end:] if size > end else b""
                continue
            frame = buffer[:end]
            self._buffer = buffer[end:] if size > end else b""
            if first & 0x0F == Opcode.CLOSE and self._fragments is not None and not self.closing:
                # A close inside a fragmented message ends it (RFC 6455 §5.4: control frames
                # may come between fragments): the unfinished message is dropped, and a fresh
                # library, between messages, takes the close as a normal one.
                self._fragments = self._utf8 = None
                self._protocol = None
            message = self._through_library(bytes(frame))
            if message is not None:
                return message
        return self.ended

    # ---- out ------------------------------------------------------------------------

    def encode(self, frame: Text | Binary) -> bytes:
        """The bytes of one data frame to the client (compressed if that was negotiated)."""
        if isinstance(frame, Text):
            return self.encode_text(frame.data)
        return encode_frame(Opcode.BINARY, frame.data, self.extensions)

    def encode_text(self, text: str) -> bytes:
        """``encode(Text(text))`` without the ``Text``."""
        if self.extensions:
            return encode_frame(Opcode.TEXT, text.encode(), self.extensions)
        return _last_text.frame_of(text)

    def close(self, code: int, reason: str = "") -> bytes:
        """Start the close handshake; return the close frame's bytes (b"" if it is too late)."""
        if self.closing or self.ended is not None:
            return b""
        self.closing = True
        protocol = self._library()
        protocol.send_close(code, reason)
        self._collect(protocol)
        return self.data_to_send()

    def data_to_send(self) -> bytes:
        """What the protocol owes the client now (pongs, a close reply), once."""
        writes, self._writes = self._writes, None
        self.owes = False
        return b"".join(writes) if writes else b""

    @property
    def close_received(self) -> bool:
        """Whether the client's close frame arrived (the handshake is complete if we sent ours)."""
        return self._protocol is not None and self._protocol.close_rcvd is not None

    # ---- inside ---------------------------------------------------------------------

    def _room(self) -> int:
        """Largest payload the next frame may announce (websockets' rule: message budget)."""
        protocol = self._protocol
        if protocol is not None and protocol.current_size is not None:
            return self.max_message_size - protocol.current_size
        return self.max_message_size

    def _library(self) -> Protocol:
        protocol = self._protocol
        if protocol is None:
            protocol = Protocol(
                Side.SERVER, state=OPEN, max_size=self.max_message_size, logger=_PROTOCOL_LOGGER
            )
            protocol.extensions = list(self.extensions)
            self._protocol = protocol
        return protocol

    def _through_library(self, frame: bytes) -> Text | Binary | None:
        """Let websockets parse one whole frame; return the message it completes, if any."""
        protocol = self._library()
        protocol.max_message_size = self.max_message_size  # SetOptions may have changed it
        protocol.receive_data(frame)
        message = None
        for event in protocol.events_received():  # a server's Protocol gives frames only
            if isinstance(event, Frame) and event.opcode <= Opcode.BINARY:
                message = self._assemble(event)
        self._collect(protocol)
        if (
            protocol.state is OPEN
            and protocol.current_size is None
            and not self.closing
            and self.ended is None
        ):
            self._protocol = None  # between messages it holds nothing: made again on need
        return message if self.ended is None else None

    def _assemble(self, frame: Frame) -> Text | Binary | None:
        """Add a data frame to the message being received; return it when complete."""
        if self.closing:
            return None  # data after our close frame is discarded (RFC 6455 §1.4)
        data = bytes(frame.data)
        if frame.opcode is not Opcode.CONT:
            self._fragments = []
            self._fragment_text = frame.opcode is Opcode.TEXT
            self._utf8 = codecs.getincrementaldecoder("utf-8")() if self._fragment_text else None
        assert self._fragments is not None  # the library refuses a stray continuation
        if self._utf8 is not None:
            try:  # fail fast on bad UTF-8, before the rest of the message arrives
                self._utf8.decode(data, final=frame.fin)
            except UnicodeDecodeError:
                self._fail(1007, "invalid UTF-8 in a text message")
                return None
        self._fragments.append(data)
        if not frame.fin:
            return None
        payload = b"".join(self._fragments)
        self._fragments = self._utf8 = None
        return Text(payload.decode()) if self._fragment_text else Binary(payload)

    def _collect(self, protocol: Protocol) -> None:
        """Take the library's writes, and note how the client's side ended, if it did."""
        for data in protocol.data_to_send():
            if data:
                self._owe(data)
            else:  # websockets' end-of-stream marker: the server closes TCP now
                self.transport_done = True
        if protocol.state is CLOSED:
            self.transport_done = True
        if self.ended is not None:
            return
        if protocol.parser_exc is not None:
            sent = protocol.close_sent
            if isinstance(protocol.parser_exc, EOFError) or sent is None:
                self.ended = ClientClosed(1006)
            else:
                self.ended = ProtocolError(sent.code, sent.reason)
        elif protocol.close_rcvd is not None and not self.closing:
            received = protocol.close_rcvd
            self.ended = ClientClosed(received.code, received.reason)

    def _owe(self, data: bytes) -> None:
        """Bytes the protocol owes the client, for ``data_to_send``."""
        if self._writes is None:
            self._writes = []
        self._writes.append(data)
        self.owes = True

    def _fail(self, code: int, reason: str) -> TerminateReason:
        """End the connection for a protocol error the client made, with ``code``."""
        protocol = self._library()
        protocol.fail(code, reason)
        self.ended = ProtocolError(code, reason)
        self._collect(protocol)
        return self.ended


def decode_simple_frame(buffer: bytes | bytearray, start: int, end: int) -> Text | Binary | None:
    """The message in the whole, masked, unfragmented, uncompressed data frame that begins
    ``buffer`` and ends at ``end``; its masking key is at ``start`` (after the length).

    None for a text frame whose payload is not UTF-8.
    """
    payload = apply_mask(buffer[start + 4 : end], buffer[start : start + 4])
    if buffer[0] == _FIN_BINARY:
        return wire_binary(payload)
    try:
        return wire_text(payload.decode())
    except UnicodeDecodeError:
        return None


def encode_frame(
    opcode: Opcode, payload: bytes, extensions: Sequence[Extension] = _NO_EXTENSIONS
) -> bytes:
    """One unmasked server frame: through websockets' serializer when an extension may
    transform it, else its header packed here (the bytes are the same, without the copies)."""
    if extensions:
        return Frame(opcode, payload).serialize(mask=False, extensions=extensions)
    length = len(payload)
    if length < 126:
        return _SHORT_HEADERS[opcode][length] + payload
    if length < 65536:
        return _HEADER_16.pack(0x80 | opcode, 126, length) + payload
    return _HEADER_64.pack(0x80 | opcode, 127, length) + payload


def encode_message(message: str | bytes) -> bytes:
    """One unmasked, uncompressed text (str) or binary (bytes) frame."""
    if isinstance(message, str):
        return encode_frame(Opcode.TEXT, message.encode())
    return encode_frame(Opcode.BINARY, message)


_HEADER_16 = struct.Struct("!BBH")
_HEADER_64 = struct.Struct("!BBQ")
_SHORT_HEADERS = {
    opcode: tuple(bytes((0x80 | opcode, length)) for length in range(126)) for opcode in Opcode
}
"""Every header of a final frame under 126 bytes, made once."""


class _LastText:
    """The uncompressed frame of the last text encoded, given again for that same ``str``
    object: one message that many connections' ``websocket_info`` return is encoded once."""

    __slots__ = ("pair",)

    def __init__(self) -> None:
        self.pair = ("", encode_frame(Opcode.TEXT, b""))  # one tuple: swapped whole

    def frame_of(self, text: str) -> bytes:
        last, frame = self.pair
        if text is not last:  # the object itself: kept here, so no other has its id
            frame = encode_frame(Opcode.TEXT, text.encode())
            self.pair = (text, frame)
        return frame


_last_text = _LastText()


def encode_ping(payload: bytes) -> bytes:
    """A server ping frame."""
    return encode_frame(Opcode.PING, payload)


def encode_pong(payload: bytes) -> bytes:
    """A server pong frame."""
    return encode_frame(Opcode.PONG, payload)
