"""The connection's rules, driven on ``ConnectionCore`` alone: no socket, no task, no clock but
a number. Each test is one rule the loop in ``connection.py`` relies on."""

from __future__ import annotations

import pytest
import trio

from server import Close, ConnectionOptions, OutboxPolicy, SetOptions, Stop, Text
from server.commands import Binary
from server.engine.core import KEEPALIVE_PING, ConnectionCore, Phase
from server.engine.session import NEED_DATA, Session, encode_message, encode_ping
from server.termination import (
    ClientClosed,
    HandlerStopped,
    IdleTimeout,
    ServerShutdown,
    SlowClient,
)

from .kit import frame

OPCODE_TEXT, OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG = 0x1, 0x8, 0x9, 0xA
CLIENT_CLOSE_1000 = frame(OPCODE_CLOSE, b"\x03\xe8")


class Clock:
    """Time as a number the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def core_with(clock: Clock | None = None, **options: object) -> ConnectionCore:
    session = Session(max_message_size=2**20)
    return ConnectionCore(session, ConnectionOptions(**options), clock or Clock())  # type: ignore[arg-type]


def written(core: ConnectionCore, room: int | None = None) -> bytes:
    """What a transport taking ``room`` bytes (None: everything) gets from the core."""
    out = b""
    while data := core.data_to_send(1 << 16):
        taken = len(data) if room is None else min(room - len(out), len(data))
        core.sent(taken, len(data))
        out += data[:taken]
        if taken < len(data):
            break
    return out


def opcodes(data: bytes) -> list[int]:
    """The opcodes of the unmasked server frames in ``data``, in order (whole frames only)."""
    found, at = [], 0
    while at < len(data):
        length, start = data[at + 1] & 0x7F, at + 2
        if length == 126:
            length, start = int.from_bytes(data[at + 2 : at + 4], "big"), at + 4
        elif length == 127:
            length, start = int.from_bytes(data[at + 2 : at + 10], "big"), at + 10
        assert start + length <= len(data), "a frame cut short"
        found.append(data[at] & 0x0F)
        at = start + length
    return found


# ---- order ----------------------------------------------------------------------------------


def test_pushed_frames_and_a_callbacks_frames_leave_in_the_order_they_were_queued() -> None:
    core = core_with()
    assert core.push(encode_message("pushed 1")) and core.push(encode_message("pushed 2"))
    assert core.apply([Text("own 1"), Binary(b"own 2")]) is None
    assert written(core) == b"".join(
        encode_message(m) for m in ("pushed 1", "pushed 2", "own 1", b"own 2")
    )
    assert core.frames_out == 4 and core.queued_bytes == 0


def test_a_frame_the_transport_took_in_part_blocks_until_the_rest_is_written() -> None:
    core = core_with()
    core.apply(Text("x" * 100))
    first = written(core, room=10)
    assert len(first) == 10 and core.blocked
    core.apply(Text("after"))
    assert first + written(core) == encode_message("x" * 100) + encode_message("after")
    assert not core.blocked


# ---- pushes and overflow ----------------------------------------------------------------------


def blocked_core(**options: object) -> ConnectionCore:
    """A core whose transport took 1 byte of the first frame pushed: it is ``blocked``."""
    core = core_with(**options)
    assert core.push(encode_message("first"))
    written(core, room=1)
    assert core.blocked
    return core


@pytest.mark.parametrize(
    ("policy", "code"), [(OutboxPolicy.CLOSE_1013, 1013), (OutboxPolicy.CLOSE_1008, 1008)]
)
def test_a_push_to_a_full_outbox_ends_the_connection_with_the_policys_code(
    policy: OutboxPolicy, code: int
) -> None:
    core = blocked_core(outbox_capacity=2, outbox_overflow=policy)
    assert core.push(encode_message("second"))
    assert core.push(encode_message("third")) is False
    assert core.phase is Phase.ENDING and core.dropped == 1
    assert core.reason == SlowClient("outbox full: the client is not keeping up", code)
    assert core.push(encode_message("4")) is False  # refused: the end is decided
    assert core.apply(Text("nor this")) is None and core.frames_out == 2
    core.end(core.reason)  # the close goes behind the frame begun; "second" is dropped
    assert core.phase is Phase.CLOSING and core.dropped == 2
    assert opcodes(b"\x81" + written(core)) == [OPCODE_TEXT, OPCODE_CLOSE]
    assert core.close_code_sent == code and core.phase is Phase.CLOSE_SENT


def test_a_push_to_an_outbox_full_of_frames_not_yet_offered_asks_for_a_write_first() -> None:
    core = core_with(outbox_capacity=1)
    assert core.push(encode_message("held"))
    assert core.push(encode_message("next")) is None  # write what is held, then push again
    assert core.phase is Phase.OPEN and core.dropped == 0
    written(core)
    assert core.push(encode_message("next"))


def test_under_the_drop_policy_a_full_outbox_drops_the_push_and_stays_open() -> None:
    core = blocked_core(outbox_capacity=1, outbox_overflow=OutboxPolicy.DROP)
    assert core.push(encode_message("dropped")) is False
    assert (core.phase, core.dropped) == (Phase.OPEN, 1)
    assert written(core) == encode_message("first")[1:]


def test_the_outbox_is_full_by_bytes_too_but_one_frame_always_fits() -> None:
    core = core_with(outbox_bytes=100, outbox_overflow=OutboxPolicy.DROP)
    assert core.push(encode_message("x" * 500))  # alone: it fits whatever its size
    written(core, room=1)
    assert core.push(encode_message("y")) is False
    assert core.dropped == 1


def test_a_callbacks_frames_are_owed_past_the_bounds_and_the_outbox_then_counts_full() -> None:
    core = core_with(outbox_capacity=2)
    core.apply([Text("1"), Text("2"), Text("3")])
    assert core.queued_bytes == 3 * len(encode_message("1"))  # none dropped
    assert not core.has_room_for(0)  # the loop waits for room before its next event


def test_a_close_queued_on_a_full_outbox_drops_the_frames_not_begun_but_ends_the_one_begun() -> (
    None
):
    core = core_with(outbox_capacity=3)
    big = encode_message("x" * 1000)
    for _ in range(3):
        core.push(big)
    begun = written(core, room=10)  # the socket took 10 bytes of the first frame
    core.end(ServerShutdown())
    rest = written(core)
    assert core.dropped == 2
    assert opcodes(begun + rest) == [OPCODE_TEXT, OPCODE_CLOSE]  # whole frames, close last
    assert core.close_code_sent == 1001


# ---- the close handshake ----------------------------------------------------------------------


def test_the_reply_to_a_clients_close_goes_after_what_is_queued_and_nothing_after_it() -> None:
    core = core_with()
    core.receive_data(frame(0x2, b"x" * 2000) * 3 + CLIENT_CLOSE_1000)
    while (event := core.next_event()) is not NEED_DATA and isinstance(event, Binary):
        core.apply(event)  # echo
    assert event == ClientClosed(1000) and core.phase is Phase.CLOSE_RECEIVED
    assert not core.push(encode_message("too late"))
    assert core.apply(Text("nor this")) is None
    core.end(event)
    assert core.phase is Phase.DONE and not core.awaits_close
    assert opcodes(written(core)) == [0x2, 0x2, 0x2, OPCODE_CLOSE]
    assert core.close_code_sent is None  # a reply, not a close of ours


def test_a_close_command_queues_the_close_frame_last_and_ends_the_handler() -> None:
    core = core_with()
    reason = core.apply([Text("bye"), Close(4000, "done"), Text("never sent")])
    assert reason == HandlerStopped() and core.phase is Phase.CLOSING
    assert opcodes(written(core)) == [OPCODE_TEXT, OPCODE_CLOSE]
    assert core.phase is Phase.CLOSE_SENT and core.close_code_sent == 4000
    core.end(reason)  # the loop ends: the close is already queued, not queued twice
    assert written(core) == b"" and core.awaits_close
    core.receive_data(CLIENT_CLOSE_1000)  # the client's reply
    assert core.next_event() is NEED_DATA
    assert core.phase is Phase.DONE and not core.awaits_close


def test_stop_closes_with_1000() -> None:
    core = core_with()
    assert core.apply(Stop()) == HandlerStopped()
    assert written(core)[:4] == b"\x88\x02\x03\xe8"


def test_a_client_vanishing_after_our_close_ends_the_wait() -> None:
    core = core_with()
    core.end(ServerShutdown())
    written(core)
    core.receive_data(b"")
    assert core.next_event() == ClientClosed(1006)
    assert core.phase is Phase.DONE


def test_an_abort_drops_everything_and_nothing_is_written_after_it() -> None:
    core = core_with()
    core.push(encode_message("queued"))
    core.end(SlowClient("send timed out", 1006))
    assert core.phase is Phase.ABORTED
    assert core.data_to_send(1 << 16) == b"" and core.close_code_sent is None


def test_nothing_is_written_once_the_transport_is_closed() -> None:
    core = core_with()
    core.push(encode_message("queued"))
    core.closed()
    assert core.data_to_send(1 << 16) == b"" and core.phase is Phase.DONE
    assert not core.push(encode_message("later"))


def test_the_protocols_pong_is_queued_in_order_with_the_replies() -> None:
    core = core_with()
    core.receive_data(frame(OPCODE_TEXT, b"a") + frame(OPCODE_PING, b"hi"))
    event = core.next_event()
    assert event == Text("a")
    core.apply(event)
    assert core.next_event() is NEED_DATA
    assert opcodes(written(core)) == [OPCODE_TEXT, OPCODE_PONG]


# ---- liveness ---------------------------------------------------------------------------------


def test_an_idle_client_is_ended_with_idle_timeout_at_the_deadline() -> None:
    clock = Clock()
    core = core_with(clock, idle_timeout=10.0)
    assert core.next_check(clock.now) == 10.0
    clock.now = 4.0
    core.receive_data(frame(OPCODE_TEXT, b"a"))  # activity moves the deadline
    assert core.tick(10.0) == 14.0 and core.phase is Phase.OPEN
    assert core.tick(14.0) == float("inf")
    assert core.phase is Phase.ENDING and core.reason == IdleTimeout()


def test_a_ping_is_queued_when_due_and_a_missing_pong_ends_the_connection() -> None:
    core = core_with(idle_timeout=None, ping_interval=5.0, pong_timeout=2.0)
    assert core.tick(5.0) == 7.0
    assert written(core) == encode_ping(KEEPALIVE_PING)
    core.tick(7.0)
    assert core.reason == IdleTimeout()


def test_a_slow_handler_is_not_an_idle_client() -> None:
    clock = Clock()
    core = core_with(clock, idle_timeout=10.0)
    core.handling = True  # as the loop sets it
    assert core.tick(10.0) == 20.0  # the check fell while the handler ran: not idle
    clock.now = 15.0
    core.handling_ended()  # the idle timer counts from the handler's end
    assert core.tick(20.0) == 25.0 and core.phase is Phase.OPEN


def test_set_options_changes_the_idle_timeout_and_asks_for_the_check_to_be_rescheduled() -> None:
    class Timing:
        changed = 0

        def timing_changed(self) -> None:
            self.changed += 1

    timing = Timing()
    core = ConnectionCore(Session(max_message_size=100), ConnectionOptions(), Clock(), timing)
    core.apply([SetOptions(idle_timeout=3.0, max_message_size=5000)])
    assert timing.changed == 1 and core.next_check(0.0) == 3.0
    assert core.session.max_message_size == 5000


# ---- the writer and the reader's shortcut ---------------------------------------------------


class Transport:
    """A non-blocking transport taking at most ``room`` bytes in all (None: everything)."""

    def __init__(self, room: int | None = None) -> None:
        self.room = room
        self.out = bytearray()
        self.broken = False

    def write(self, data: bytes | memoryview) -> int:
        if self.broken:
            raise trio.BrokenResourceError("gone")
        taken = len(data) if self.room is None else min(self.room - len(self.out), len(data))
        self.out += data[:taken]
        return taken


def test_the_writer_offers_whole_frames_in_order_and_nothing_once_the_transport_takes_less() -> (
    None
):
    core = core_with()
    frames = [encode_message(f"frame {n}") for n in range(3)]
    for data in frames:
        assert core.push(data)
    transport = Transport(room=len(frames[0]) + 3)  # the second frame is cut after 3 bytes
    assert core.write_to(transport.write, 1 << 16) == len(frames[0]) + 3
    assert core.blocked
    transport.room = None
    assert core.write_to(transport.write, 1 << 16) == 0  # blocked: only the flush writes
    assert bytes(transport.out) + written(core) == b"".join(frames)
    assert not core.blocked and core.queued_bytes == 0


def test_the_writer_marks_our_close_frame_sent_once_it_is_written_whole() -> None:
    core = core_with()
    core.apply([Text("bye"), Close(1000)])
    transport = Transport()
    core.write_to(transport.write, 1 << 16)
    assert opcodes(bytes(transport.out)) == [OPCODE_TEXT, OPCODE_CLOSE]
    assert core.close_code_sent == 1000 and core.phase is Phase.CLOSE_SENT


def test_the_writer_marks_a_lone_close_frame_sent_too() -> None:
    core = core_with()
    core.apply(Close(1001))  # one chunk queued: the writer's shortcut must not skip the rule
    core.write_to(Transport().write, 1 << 16)
    assert core.close_code_sent == 1001 and core.phase is Phase.CLOSE_SENT


def test_a_broken_transport_loses_what_was_queued_without_raising() -> None:
    core = core_with()
    core.apply(Text("never"))
    transport = Transport()
    transport.broken = True
    assert core.write_to(transport.write, 1 << 16) == 0
    assert core.queued_bytes == 0 and transport.out == b""


def test_the_core_says_when_next_event_would_only_say_need_data() -> None:
    core = core_with()
    assert core.input_pending  # bytes read with the head may be in the session
    assert core.next_event() is NEED_DATA and not core.input_pending
    one, two = frame(OPCODE_TEXT, b"one"), frame(OPCODE_TEXT, b"two")
    core.receive_data(one + two[:3])
    assert core.input_pending
    assert core.next_event() == Text("one")
    assert core.input_pending  # part of the next frame is still unparsed
    assert core.next_event() is NEED_DATA and not core.input_pending
    core.receive_data(two[3:])
    assert core.input_pending and core.next_event() == Text("two")
    assert not core.input_pending  # every byte received is given out: no need to ask
    assert core.next_event() is NEED_DATA
