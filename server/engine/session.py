"""One WebSocket connection's protocol, apart from I/O (h11's manner): bytes in, events out.

``Session`` parses the client's frames itself (RFC 6455) and keeps corral's rules for them in
one place: a frame header is judged the moment it arrives (a reserved opcode or bit, a missing
mask, a malformed control frame, a continuation out of place, a frame over the message size
limit, one fragment too many), before any of its payload is waited for; a message's fragments
are joined into one buffer as they come; a compressed message is inflated by ``inflate`` in
bounded steps under the server's budget. websockets supplies the records (``Close``) and the
outgoing compression (``websockets_api``); the common frame, a whole masked text or binary
message, is unmasked with its C helper and decoded in a few lines (``decode_simple_frame``).

Events are parsed on demand, one per ``next_event`` call, so the handler sees the client's
frames in order with what they cause (a close after a message ends the connection after
that message is handled, as Cowboy does).
"""

from __future__ import annotations

import codecs
import struct
import zlib
from collections.abc import Sequence
from typing import Final

from ..commands import Binary, Text, wire_binary, wire_text
from ..termination import ClientClosed, ProtocolError, TerminateReason
from .inflate import INFLATE_STEP, Charge, Inflater
from .websockets_api import Close, Extension, Frame, Opcode, apply_mask
from .websockets_api import ProtocolError as LibraryProtocolError

NEED_DATA: Final = None
"""``next_event``'s answer when no whole event is buffered: read more from the client
(or, while ``inflating``, let other tasks run and call again)."""

DEFAULT_MAX_FRAGMENTS: Final = 4096
"""Most frames one message may come in (websockets' own limit)."""

_FIN_TEXT, _FIN_BINARY = 0x81, 0x82
"""First header byte of an unfragmented text/binary frame with no reserved bit set."""
_FIN, _RSV1, _RSV2_RSV3 = 0x80, 0x40, 0x30
_MAX_CONTROL_PAYLOAD = 125
"""RFC 6455 §5.5: a control frame's payload is at most this long."""
_MASKED = 0x80
_CONT, _TEXT, _BINARY, _CLOSE, _PING = 0x0, 0x1, 0x2, 0x8, 0x9
_OPCODES = frozenset(int(opcode) for opcode in Opcode)
_NO_EXTENSIONS: tuple[Extension, ...] = ()


class _Message:
    """A fragmented (or compressed) message being received: its bytes so far, joined."""

    __slots__ = ("text", "data", "fragments", "utf8", "charge")

    def __init__(self, text: bool, charge: Charge | None) -> None:
        self.text = text
        self.data = bytearray()
        self.fragments = 0
        self.utf8 = codecs.getincrementaldecoder("utf-8")() if text else None
        self.charge = charge
        """What the inflated bytes hold of the server's budget (compressed messages only)."""


class Session:
    """The protocol state of one server-side connection (RFC 6455), fed by the caller.

    - ``receive_data(bytes)`` / ``receive_eof()``: what the client sent;
    - ``next_event()``: the next ``Text``/``Binary`` message, NEED_DATA, or the
      ``TerminateReason`` the client caused (close frame, protocol error, EOF); call it until
      NEED_DATA before reading more, or, while ``inflating``, again after a checkpoint;
    - ``encode(frame)``, ``close(code, reason)``: frames to send;
    - ``data_to_send()``: bytes the protocol itself owes the client (pongs, close replies);
    - ``transport_done``: the close handshake is over on the server's side: close TCP.
    """

    __slots__ = (
        "max_message_size",
        "max_fragments",
        "extensions",
        "ended",
        "closing",
        "close_received",
        "transport_done",
        "inflating",
        "unparsed",
        "_message",
        "_inflater",
        "_writes",
        "owes",
    )

    def __init__(
        self,
        *,
        max_message_size: int,
        max_fragments: int = DEFAULT_MAX_FRAGMENTS,
        extensions: Sequence[Extension] = _NO_EXTENSIONS,
        inflater: Inflater | None = None,
    ) -> None:
        self.max_message_size = max_message_size
        self.max_fragments = max_fragments
        self.extensions = tuple(extensions) if extensions else _NO_EXTENSIONS
        """What compresses the frames sent (permessage-deflate, when negotiated)."""
        self.ended: TerminateReason | None = None
        """Why the client's side ended (close frame, protocol error, EOF), once it has."""
        self.closing = False
        """True once the server sent its close frame: later frames are not sent."""
        self.close_received = False
        """Whether the client's close frame arrived (the handshake is complete if we sent ours)."""
        self.transport_done = False
        self.inflating = False
        """Whether a compressed message is being inflated: ``next_event`` has more to give
        without any new bytes (it inflates a bounded step per call)."""
        self.unparsed: bytes | bytearray = b""
        """Bytes received and not yet parsed into events (b"" once all are given out)."""
        self._message: _Message | None = None  # a fragmented message being assembled
        self._inflater = inflater
        self._writes: list[bytes] | None = None
        self.owes = False
        """Whether ``data_to_send`` has bytes (pongs, a close reply)."""

    # ---- in -------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes from the client, appended to what is still unparsed."""
        if self.close_received:
            return  # what follows a close is discarded (RFC 6455 §1.4)
        buffer = self.unparsed
        if not buffer:
            self.unparsed = data
        elif isinstance(buffer, bytearray):
            buffer += data
        else:
            self.unparsed = bytearray(buffer) + data

    def receive_eof(self) -> None:
        """The client closed its side of TCP."""
        self.transport_done = True
        if self.ended is None:
            self.ended = ClientClosed(1006)

    def next_event(self) -> Text | Binary | TerminateReason | None:
        """The next whole message, the reason the client's side ended, or NEED_DATA."""
        while self.ended is None:
            if self._inflater is not None and self._inflater.pending:
                inflated = self._inflate_step()
                self.inflating = self._inflater.pending
                if inflated is not None or self.inflating:
                    return inflated  # NEED_DATA here: one step done, ``inflating`` says more
                continue
            buffer = self.unparsed
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
            if (
                (first == _FIN_TEXT or first == _FIN_BINARY)
                and second & _MASKED
                and self._message is None
                and not self.closing
            ):
                if length > self.max_message_size:  # refused before any payload is read
                    return self._too_big(length)
                end = start + 4 + length
                if size < end:
                    return NEED_DATA
                message = decode_simple_frame(buffer, start, end)
                self.unparsed = buffer[end:] if size > end else b""
                if message is not None:
                    return message
                return self._fail(1007, "invalid UTF-8 in a text message")
            refused = self._refuse_header(first, second, length)
            if refused is not None:
                return refused
            end = start + 4 + length
            if size < end:
                return NEED_DATA
            payload = apply_mask(buffer[start + 4 : end], buffer[start : start + 4])
            self._consume(buffer, end, size)
            if first & 0x08:
                self._control(first & 0x0F, payload)
            else:
                message = self._data(first, payload)
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
        """Start the close handshake; return the close frame's bytes (b"" if it is too late).

        Data the client sends from now on is checked but discarded (RFC 6455 §1.4).
        """
        if self.closing or self.ended is not None:
            return b""
        self.closing = True
        if self._message is not None:  # its remaining frames are still expected, and discarded
            self._drop_message()
            self._message = _Message(False, None)
        self._owe(encode_frame(Opcode.CLOSE, Close(code, reason).serialize()))
        return self.data_to_send()

    def data_to_send(self) -> bytes:
        """What the protocol owes the client now (pongs, a close reply), once."""
        writes, self._writes = self._writes, None
        self.owes = False
        return b"".join(writes) if writes else b""

    # ---- inside ---------------------------------------------------------------------

    def _consume(self, buffer: bytes | bytearray, end: int, size: int) -> None:
        """Drop the frame that ends at ``end`` from the buffer: in place for a bytearray (no
        copy of the rest), so a read of thousands of tiny fragments is not copied once each."""
        if size == end:
            self.unparsed = b""
        elif type(buffer) is bytearray:
            del buffer[:end]
        else:
            self.unparsed = bytearray(memoryview(buffer)[end:])

    def _refuse_header(self, first: int, second: int, length: int) -> TerminateReason | None:
        """End the session if a frame's header alone breaks a rule, before its payload is
        waited for; checked in websockets' order, so both give the same close code."""
        opcode = first & 0x0F
        if opcode not in _OPCODES:
            return self._fail(1002, "invalid opcode")
        if not second & _MASKED:
            return self._fail(1002, "incorrect masking")
        message = self._message
        room = self.max_message_size - (len(message.data) if message is not None else 0)
        if length > room:
            return self._too_big(self.max_message_size - room + length)
        if first & _RSV2_RSV3 or (
            first & _RSV1 and (self._inflater is None or opcode not in (_TEXT, _BINARY))
        ):
            return self._fail(1002, "reserved bits must be 0")
        if opcode & 0x08:
            if not first & _FIN:
                return self._fail(1002, "fragmented control frame")
            if length > _MAX_CONTROL_PAYLOAD:
                return self._fail(1002, "control frame too long")
        elif opcode == _CONT:
            if message is None:
                return self._fail(1002, "unexpected continuation frame")
            if message.fragments >= self.max_fragments:
                return self._fail(1009, f"message in over {self.max_fragments} fragments")
        elif message is not None:
            return self._fail(1002, "expected a continuation frame")
        return None

    def _control(self, opcode: int, payload: bytes) -> None:
        """A whole ping, pong or close frame: answer a ping, end on a close."""
        if opcode == _PING:
            if not self.closing:
                self._owe(encode_pong(payload))
        elif opcode == _CLOSE:
            self._receive_close(payload)
        # a pong needs nothing: any bytes from the client already count as liveness

    def _receive_close(self, payload: bytes) -> None:
        """The client's close frame: echoed if it starts the handshake (RFC 6455 §5.5.1); a
        message it interrupts is dropped and the close taken as a normal one (§5.4)."""
        try:
            close = Close.parse(payload)
        except LibraryProtocolError as exc:
            self._fail(1002, str(exc))
            return
        except UnicodeDecodeError:
            self._fail(1007, "invalid UTF-8 in the close reason")
            return
        self._drop_message()
        self.close_received = self.transport_done = True
        self.unparsed = b""  # what follows a close is discarded
        if not self.closing:
            self._owe(encode_frame(Opcode.CLOSE, payload))  # as sent: an empty one stays empty
            self.ended = ClientClosed(close.code, close.reason)

    def _data(self, first: int, payload: bytes) -> Text | Binary | None:
        """A text, binary or continuation frame (its header already checked)."""
        message = self._message
        if message is None:  # _refuse_header let no stray continuation through
            compressed = first & _RSV1 and self._inflater is not None and not self.closing
            charge = None
            if compressed:
                assert self._inflater is not None
                self._inflater.start_message()
                charge = Charge(self._inflater.budget)
            message = self._message = _Message(first & 0x0F == _TEXT, charge)
        message.fragments += 1
        final = bool(first & _FIN)
        if message.charge is not None:
            assert self._inflater is not None
            self._inflater.feed(payload, final=final)
            return None  # inflated by the next steps
        return self._append(message, payload, final)

    def _inflate_step(self) -> Text | Binary | TerminateReason | None:
        """Inflate one bounded step of the compressed message being received."""
        inflater, message = self._inflater, self._message
        assert inflater is not None and message is not None and message.charge is not None
        room = self.max_message_size - len(message.data)
        try:
            inflated = inflater.step(min(INFLATE_STEP, room + 1))
        except zlib.error:
            return self._fail(1002, "decompression failed")
        if len(inflated) > room:
            return self._too_big(len(message.data) + len(inflated))
        if not message.charge.take(len(inflated)):
            return self._fail(1013, "the server's memory for compressed messages is spent")
        return self._append(message, inflated, inflater.done)

    def _append(self, message: _Message, data: bytes, final: bool) -> Text | Binary | None:
        """Add bytes to the message being received; return it when complete."""
        if self.closing:  # data after our close frame is discarded (RFC 6455 §1.4)
            if final:
                self._message = None
            return None
        if message.utf8 is not None:
            try:  # fail fast on bad UTF-8, before the rest of the message arrives
                message.utf8.decode(data, final)
            except UnicodeDecodeError:
                self._fail(1007, "invalid UTF-8 in a text message")
                return None
        message.data += data
        if not final:
            return None
        self._message = None
        if message.text:
            return Text(message.data.decode())
        return Binary(bytes(message.data))

    def _drop_message(self) -> None:
        """Forget the message being received (its budget given back)."""
        if self._message is not None and self._message.charge is not None:
            assert self._inflater is not None
            self._inflater.drop()
            self.inflating = False
        self._message = None

    def _owe(self, data: bytes) -> None:
        """Bytes the protocol owes the client, for ``data_to_send``."""
        if self._writes is None:
            self._writes = []
        self._writes.append(data)
        self.owes = True

    def _too_big(self, size: int) -> TerminateReason:
        """End with 1009: the message would be at least ``size`` bytes."""
        limit = self.max_message_size
        return self._fail(1009, f"message of {size} bytes or more exceeds limit of {limit} bytes")

    def _fail(self, code: int, reason: str) -> TerminateReason:
        """End the connection for a protocol error the client made, with ``code``: the close
        frame (unless ours was sent), then TCP closes; nothing more is read."""
        if not self.closing:
            self._owe(encode_frame(Opcode.CLOSE, Close(code, reason).serialize()))
        self._drop_message()
        self.unparsed = b""
        self.transport_done = True
        self.ended = ProtocolError(code, reason)
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
