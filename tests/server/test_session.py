"""The connection's protocol state without a socket: frames in, events and bytes out.

corral's frame parser is checked against websockets' own on random frame streams: same
messages, same end.
"""

from __future__ import annotations

import zlib

import hypothesis.strategies as st
import pytest
from hypothesis import assume, given, settings
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode
from websockets.protocol import OPEN, Protocol, Side

from server.commands import Binary, Text
from server.engine.inflate import INFLATE_STEP, InflateBudget, Inflater, InflateSettings
from server.engine.outbox import Outbox
from server.engine.session import NEED_DATA, Session, encode_frame, encode_message, encode_ping
from server.termination import ClientClosed, ProtocolError

from .kit import frame


def events(session: Session) -> list[object]:
    """Every event the session has buffered, up to NEED_DATA or an end."""
    found: list[object] = []
    while (event := session.next_event()) is not NEED_DATA:
        found.append(event)
        if not isinstance(event, (Text, Binary)):
            break
    return found


def test_a_whole_text_frame_is_one_message_and_needs_no_library() -> None:
    session = Session(max_message_size=100)
    session.receive_data(frame(0x1, "héllo".encode()))
    assert events(session) == [Text("héllo")]
    assert session.data_to_send() == b""


def test_a_frame_split_anywhere_waits_for_its_last_byte() -> None:
    whole = frame(0x2, b"x" * 300)  # a 16-bit length
    session = Session(max_message_size=1000)
    for cut in (1, 3, 7, len(whole) - 1):
        session = Session(max_message_size=1000)
        session.receive_data(whole[:cut])
        assert session.next_event() is NEED_DATA
        session.receive_data(whole[cut:])
        assert events(session) == [Binary(b"x" * 300)]


def test_fragments_make_one_message_and_a_ping_between_them_is_answered() -> None:
    session = Session(max_message_size=100)
    session.receive_data(
        frame(0x1, b"con", fin=False) + frame(0x9, b"hi") + frame(0x0, b"cat", fin=True)
    )
    assert events(session) == [Text("concat")]
    assert session.data_to_send() == bytes([0x8A, 2]) + b"hi"  # the pong


def test_a_message_over_the_limit_is_refused_at_its_header_with_1009() -> None:
    session = Session(max_message_size=10)
    session.receive_data(frame(0x2, b"x" * 11)[:4])  # header and mask only: no payload yet
    reason = session.next_event()
    assert isinstance(reason, ProtocolError) and reason.code == 1009
    assert session.data_to_send()[:4] == bytes([0x88, 2 + len(reason.detail)]) + b"\x03\xf1"
    assert session.transport_done


def test_fragments_count_toward_the_limit_together() -> None:
    session = Session(max_message_size=10)
    session.receive_data(frame(0x2, b"x" * 6, fin=False) + frame(0x0, b"y" * 6))
    reason = events(session)[-1]
    assert isinstance(reason, ProtocolError) and reason.code == 1009


@pytest.mark.parametrize(
    "data",
    [
        frame(0x1, b"\xff"),  # the fast path
        frame(0x1, b"ok", fin=False) + frame(0x0, b"\xc3"),  # fails fast, before the end
    ],
)
def test_bad_utf8_in_text_ends_with_1007(data: bytes) -> None:
    session = Session(max_message_size=100)
    session.receive_data(data)
    reason = events(session)[-1]
    assert isinstance(reason, ProtocolError) and reason.code == 1007


def test_a_close_after_a_message_ends_the_session_after_that_message() -> None:
    session = Session(max_message_size=100)
    session.receive_data(frame(0x1, b"last") + frame(0x8, b"\x03\xe8bye"))
    assert session.next_event() == Text("last")
    assert session.data_to_send() == b""  # not yet: the close is not parsed
    assert session.next_event() == ClientClosed(1000, "bye")
    assert session.data_to_send() == bytes([0x88, 5]) + b"\x03\xe8bye"  # echoed
    assert session.transport_done


def test_a_close_between_fragments_drops_the_unfinished_message_and_closes_normally() -> None:
    session = Session(max_message_size=100)
    session.receive_data(frame(0x1, b"frag", fin=False) + frame(0x8, b"\x03\xe8"))
    assert session.next_event() == ClientClosed(1000)
    assert session.data_to_send() == bytes([0x88, 2]) + b"\x03\xe8"


def test_server_close_then_client_reply_completes_the_handshake() -> None:
    session = Session(max_message_size=100)
    assert session.close(1001, "going") == bytes([0x88, 7]) + b"\x03\xe9going"
    assert session.close(1000) == b""  # only one close frame
    session.receive_data(frame(0x1, b"late") + frame(0x8, b"\x03\xe9"))
    assert session.next_event() is NEED_DATA  # data after our close is discarded
    assert session.close_received and session.transport_done and session.ended is None


def test_eof_without_a_close_is_remote_1006() -> None:
    session = Session(max_message_size=100)
    session.receive_eof()
    assert session.next_event() == ClientClosed(1006)


def test_an_unmasked_client_frame_is_a_protocol_error() -> None:
    session = Session(max_message_size=100)
    session.receive_data(frame(0x1, b"hi", masked=False))
    reason = session.next_event()
    assert isinstance(reason, ProtocolError) and reason.code == 1002


def deflated(data: bytes) -> bytes:
    """One whole message compressed as permessage-deflate sends it (RFC 7692 §7.2.1)."""
    compressor = zlib.compressobj(wbits=-15)
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def compressed_session(max_message_size: int, budget: InflateBudget | None = None) -> Session:
    """A session that negotiated permessage-deflate (15-bit windows, context takeover)."""
    inflater = Inflater(InflateSettings(), budget or InflateBudget())
    return Session(max_message_size=max_message_size, inflater=inflater)


def test_compressed_messages_are_inflated_within_the_limit() -> None:
    session = compressed_session(1000)
    session.receive_data(frame(0x1, deflated(b"a" * 1000), rsv=4))
    assert events(session) == [Text("a" * 1000)]
    session.receive_data(frame(0x1, deflated(b"a" * 1001), rsv=4))  # tiny on the wire
    reason = events(session)[-1]
    assert isinstance(reason, ProtocolError) and reason.code == 1009


def test_an_unfinished_compressed_message_holds_at_most_max_message_size_inflated() -> None:
    compressor = zlib.compressobj(wbits=-15)
    first = compressor.compress(b"a" * 600) + compressor.flush(zlib.Z_SYNC_FLUSH)
    second = compressor.compress(b"a" * 600) + compressor.flush(zlib.Z_SYNC_FLUSH)
    session = compressed_session(1000)
    session.receive_data(frame(0x2, first, fin=False, rsv=4))
    assert session.next_event() is NEED_DATA  # 600 bytes held, inflated
    session.receive_data(frame(0x0, second, fin=False))  # 1200 would be held: refused
    reason = session.next_event()
    assert isinstance(reason, ProtocolError) and reason.code == 1009


def test_one_text_object_sent_on_many_connections_is_encoded_once_unless_compressed() -> None:
    first, second = Session(max_message_size=100), Session(max_message_size=100)
    text = "said " * 20
    encoded = first.encode_text(text)
    assert encoded == encode_frame(Opcode.TEXT, text.encode())
    assert second.encode_text(text) is encoded  # the same frame, not encoded again
    assert second.encode_text("other") == encode_frame(Opcode.TEXT, b"other")
    assert first.encode_text("".join(["said "] * 20)) == encoded  # equal text, its own object
    deflating = Session(max_message_size=100, extensions=[PerMessageDeflate(False, False, 15, 15)])
    assert deflating.encode_text(text)[0] & 0x40  # compressed (RSV1): its own frame


def test_encoded_frames_are_unmasked_server_frames() -> None:
    assert encode_message("hi") == b"\x81\x02hi"
    assert encode_message(b"\x00") == b"\x82\x01\x00"
    assert encode_ping(b"p") == b"\x89\x01p"
    assert Session(max_message_size=10).encode(Binary(b"ab")) == b"\x82\x02ab"


# ---- the fast path against the library ----------------------------------------------------

_data_frames = st.tuples(
    st.sampled_from([0x0, 0x1, 0x2, 0x8, 0x9, 0xA, 0x3]),
    st.binary(max_size=300) | st.text(max_size=100).map(str.encode),
    st.booleans(),
)


def _library_messages(data: bytes, max_size: int) -> tuple[list[object], int | None]:
    """What websockets alone makes of ``data``: assembled messages, and its close code."""
    protocol = Protocol(Side.SERVER, state=OPEN, max_size=max_size)
    protocol.receive_data(data)
    messages: list[object] = []
    parts: list[bytes] = []
    text = False
    for event in protocol.events_received():
        if event.opcode in (Opcode.TEXT, Opcode.BINARY):
            parts, text = [], event.opcode is Opcode.TEXT
        if event.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            parts.append(event.data)
            if event.fin:
                payload = b"".join(parts)
                try:
                    messages.append(Text(payload.decode()) if text else Binary(payload))
                except UnicodeDecodeError:
                    return messages, 1007
    sent = protocol.close_sent
    return messages, (sent.code if sent is not None and protocol.parser_exc else None)


def _close_inside_a_message(frames: list[tuple[int, bytes, bool]]) -> bool:
    inside = False
    for opcode, _, fin in frames:
        if opcode == 0x8 and inside:
            return True
        if opcode in (0x0, 0x1, 0x2):
            inside = not fin
    return False


@settings(max_examples=300, deadline=None)
@given(st.lists(_data_frames, max_size=8), st.integers(min_value=1, max_value=400))
def test_the_fast_path_agrees_with_websockets_on_random_frame_streams(
    frames: list[tuple[int, bytes, bool]], max_size: int
) -> None:
    assume(not _close_inside_a_message(frames))  # corral closes normally there: tested above
    data = b"".join(frame(opcode, payload, fin=fin) for opcode, payload, fin in frames)
    expected, code = _library_messages(data, max_size)
    session = Session(max_message_size=max_size)
    session.receive_data(data)
    got = events(session)
    messages = [event for event in got if isinstance(event, (Text, Binary))]
    end = got[-1] if got and not isinstance(got[-1], (Text, Binary)) else None
    if code == 1007 or (isinstance(end, ProtocolError) and end.code == 1007):
        # corral fails bad UTF-8 fast (at the bad fragment); the library has no opinion
        # until the message is whole: agree on the messages before it.
        assert messages == expected[: len(messages)]
        return
    assert messages == expected
    if code is not None:
        assert isinstance(end, ProtocolError) and end.code == code
    elif isinstance(end, ClientClosed):
        assert any(opcode == 0x8 for opcode, _, _ in frames)


_whole_frames = st.tuples(
    st.sampled_from([0x1, 0x2, 0x9, 0xA]),
    st.text(max_size=40).map(str.encode) | st.binary(max_size=125),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_whole_frames, max_size=8))
def test_pings_and_pongs_between_messages_get_what_websockets_would_send(
    frames: list[tuple[int, bytes]],
) -> None:
    assume(all(opcode != 0x1 or _is_utf8(payload) for opcode, payload in frames))
    data = b"".join(frame(opcode, payload) for opcode, payload in frames)
    library = Protocol(Side.SERVER, state=OPEN, max_size=1000)
    library.receive_data(data)
    session = Session(max_message_size=1000)
    session.receive_data(data)
    assert events(session) == _library_messages(data, 1000)[0]
    assert session.data_to_send() == b"".join(library.data_to_send())  # a pong per ping
    assert session.next_event() is NEED_DATA and not session.transport_done


def test_a_ping_over_125_bytes_is_refused_with_1002() -> None:
    session = Session(max_message_size=1000)
    session.receive_data(frame(0x9, b"x" * 126))
    reason = session.next_event()
    assert isinstance(reason, ProtocolError) and reason.code == 1002
    assert session.transport_done


def _is_utf8(payload: bytes) -> bool:
    try:
        payload.decode()
    except UnicodeDecodeError:
        return False
    return True


# ---- the outbox ---------------------------------------------------------------------------


def test_outbox_is_full_by_frames_or_by_bytes_but_always_takes_one_frame() -> None:
    outbox = Outbox(capacity=2, max_bytes=10)
    assert outbox.has_room_for(1000)  # empty: a big frame still goes
    outbox.append(b"x" * 1000)
    assert not outbox.has_room_for(1)
    assert outbox.peek(4096) == b"x" * 1000 and outbox.size == 1000  # until it is written
    outbox.discard(1000)
    assert outbox.size == 0 and outbox.has_room_for(10)
    outbox.append(b"abc")
    outbox.append(b"def")
    assert not outbox.has_room_for(1)  # two frames: the frame count is reached
    assert outbox.peek(4) == b"abc" and outbox.peek(6) == b"abcdef"
    outbox.discard(6)
    outbox.append(b"12345")
    assert outbox.has_room_for(5) and not outbox.has_room_for(6)
    assert outbox.clear() == 1 and len(outbox) == 0


def test_outbox_peeks_discards_written_bytes_and_clearing_keeps_the_end_of_a_frame_begun() -> None:
    outbox = Outbox(capacity=4, max_bytes=100)
    for chunk in (b"abc", b"def", b"ghi"):
        outbox.append(chunk)
    assert outbox.peek(7) == b"abcdef" and outbox.peek(1) == b"abc"  # whole chunks, kept
    outbox.discard(4)  # "abc" and the "d" of "def" were written
    assert outbox.size == 5 and len(outbox) == 2
    assert outbox.clear() == 1  # "ghi" goes; "ef" stays, or the stream would break
    assert outbox.size == 2 and outbox.peek(100) == b"ef"
    outbox.discard(2)
    outbox.append(b"jkl")
    outbox.discard(3)
    outbox.append(b"mno")
    assert outbox.clear() == 1 and outbox.size == 0 and len(outbox) == 0  # nothing begun


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([Opcode.TEXT, Opcode.BINARY, Opcode.PING, Opcode.PONG]),
    st.binary(max_size=70_000) | st.binary(max_size=125),
)
def test_frames_packed_here_are_the_bytes_websockets_serializes(
    opcode: Opcode, payload: bytes
) -> None:
    if opcode in (Opcode.PING, Opcode.PONG):
        payload = payload[:125]
    assert encode_frame(opcode, payload) == Frame(opcode, payload).serialize(mask=False)


# ---- hostile input: refused at the header, fragments bounded, inflation in steps ------------


@pytest.mark.parametrize(
    "header",
    [
        bytes([0x83, 0xFF]) + (2**24).to_bytes(8, "big"),  # a reserved opcode
        bytes([0x81, 0x7F]) + (2**24).to_bytes(8, "big"),  # no mask bit
        bytes([0xA1, 0xFF]) + (2**24).to_bytes(8, "big"),  # RSV2
        bytes([0xC1, 0xFF]) + (2**24).to_bytes(8, "big"),  # RSV1 without compression
        bytes([0x09, 0x85]),  # a fragmented ping
        bytes([0x89, 0xFE, 0x00, 0x7E]),  # a ping over 125 bytes
    ],
)
def test_a_bad_header_is_refused_with_1002_before_its_payload_arrives(header: bytes) -> None:
    session = Session(max_message_size=2**25)
    session.receive_data(header)  # nothing of the payload
    reason = session.next_event()
    assert isinstance(reason, ProtocolError) and reason.code == 1002
    assert session.transport_done and session.data_to_send()[:4] == b"\x88" + bytes(
        [2 + len(reason.detail.encode())]
    ) + (1002).to_bytes(2, "big")


def test_a_data_frame_inside_a_message_is_refused_at_its_header() -> None:
    session = Session(max_message_size=2**25)
    session.receive_data(
        frame(0x1, b"a", fin=False) + bytes([0x82, 0xFF]) + (2**24).to_bytes(8, "big")
    )
    reason = session.next_event()
    assert isinstance(reason, ProtocolError) and reason.code == 1002


def test_fragments_are_joined_and_counted_empty_ones_included() -> None:
    session = Session(max_message_size=100, max_fragments=3)
    session.receive_data(frame(0x2, b"", fin=False) + frame(0x0, b"x", fin=False) + frame(0x0, b""))
    assert events(session) == [Binary(b"x")]
    session.receive_data(frame(0x2, b"", fin=False) + frame(0x0, b"", fin=False) * 3)  # a 4th
    reason = session.next_event()
    assert isinstance(reason, ProtocolError) and reason.code == 1009
    assert reason.detail == "message in over 3 fragments"


def test_a_big_compressed_message_is_inflated_in_bounded_steps() -> None:
    session = compressed_session(2**22)
    session.receive_data(frame(0x2, deflated(b"z" * 2**20), rsv=4))
    steps = 0
    while (event := session.next_event()) is NEED_DATA:
        assert session.inflating  # more to give without new bytes
        steps += 1
    assert event == Binary(b"z" * 2**20)
    assert steps == 2**20 // INFLATE_STEP and not session.inflating  # a step each, then the end


def test_the_inflate_budget_is_shared_and_given_back_when_a_message_ends_or_is_dropped() -> None:
    budget = InflateBudget(1500)
    first, second = compressed_session(10_000, budget), compressed_session(10_000, budget)
    compressor = zlib.compressobj(wbits=-15)
    first.receive_data(
        frame(
            0x2,
            compressor.compress(b"a" * 1000) + compressor.flush(zlib.Z_SYNC_FLUSH),
            fin=False,
            rsv=4,
        )
    )
    assert first.next_event() is NEED_DATA and budget.held == 1000
    second.receive_data(frame(0x2, deflated(b"b" * 600), fin=False, rsv=4))
    reason = second.next_event()
    assert isinstance(reason, ProtocolError) and reason.code == 1013
    assert budget.held == 1000  # the refused message holds nothing
    first.receive_data(frame(0x8, b"\x03\xe8"))  # a close drops the unfinished message
    assert first.next_event() == ClientClosed(1000)
    assert budget.held == 0


def test_a_compressed_message_is_inflated_with_the_negotiated_window_and_context() -> None:
    settings = InflateSettings.from_response(
        [
            ("server_max_window_bits", "12"),
            ("client_max_window_bits", "10"),
            ("client_no_context_takeover", None),
        ]
    )
    assert settings == InflateSettings(window_bits=10, no_context_takeover=True)
    session = Session(max_message_size=1000, inflater=Inflater(settings, InflateBudget()))
    for text in (b"again", b"again"):  # each compressed afresh: no shared context
        compressor = zlib.compressobj(wbits=-10)
        body = (compressor.compress(text) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
        session.receive_data(frame(0x1, body, rsv=4))
        assert events(session) == [Text(text.decode())]


def test_deflate_that_does_not_inflate_is_a_protocol_error() -> None:
    session = compressed_session(1000)
    session.receive_data(frame(0x1, b"\xff\xff\xff\xff", rsv=4))
    reason = session.next_event()
    assert isinstance(reason, ProtocolError) and reason.code == 1002
