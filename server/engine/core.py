"""The rules of one WebSocket connection, apart from I/O (h11's manner): a phase, the bytes
owed to the client, and every decision that changes them.

``ConnectionCore`` takes events: bytes the client sent (parsed by its ``Session``), the
commands a callback returned, a frame another actor pushes, a liveness tick, the bytes the
transport took. It gives decisions: the next event for the handler (``next_event``), the
bytes to write (``write_to`` hands them to a transport's write; ``data_to_send`` and ``sent`` to
the loop's waiting flush), and why the connection ends (``reason``, ``phase``). It
never touches a socket or a task, and reads the time only through the clock it is given:
``connection.py`` moves the bytes and calls the handler, and tests drive this object with no
network at all.

The phase, and every transition (each made by the method named, in this module only)::

    OPEN ──fail────────────────▶ ENDING          the end is decided outside the loop (outbox
     │                             │              overflow, idle client, broken write): no
     │                             │              frame is taken any more
     ├──close (a command, end)─────┴──▶ CLOSING   our close frame is queued: nothing follows
     │                                    │
     │                                  sent      ... its last byte is written
     │                                    ▼
     │                                CLOSE_SENT  waiting for the client's close
     │
     └──next_event─────────────▶ CLOSE_RECEIVED  the client closed, broke the protocol or
                                                  left first: only the protocol's reply goes

    CLOSING, CLOSE_SENT ──next_event, end──▶ DONE   the client's close (or EOF) came
    OPEN, ENDING, CLOSE_RECEIVED ──end─────▶ DONE   nothing more to send or await
    any phase but ABORTED ──closed─────────▶ DONE   the transport is closed
    any phase ──abort──────────────────────▶ ABORTED  TCP is reset

In DONE the transport closes once ``data_to_send`` is empty; after ``closed`` and in ABORTED
it is always empty.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, Protocol

import attrs
import trio

from ..commands import Binary, Close, Commands, Ping, Pong, SetOptions, Stop, Text, as_command_list
from ..options import ConnectionOptions, OutboxPolicy
from ..termination import (
    ClientClosed,
    HandlerStopped,
    IdleTimeout,
    ProtocolError,
    SlowClient,
    TerminateReason,
)
from .liveness import Liveness, Verdict
from .outbox import Chunk, Outbox
from .session import NEED_DATA, Session, encode_ping, encode_pong

KEEPALIVE_PING = b"corral"
"""The payload of the server's keepalive pings."""


class TimingListener(Protocol):
    """Who is told that the liveness checks' timing changed (the connection's loop)."""

    def timing_changed(self) -> None: ...


class Phase(enum.Enum):
    """Where a connection is in its life (see the module's diagram)."""

    OPEN = "open"
    ENDING = "ending"
    CLOSING = "closing"
    CLOSE_SENT = "close sent"
    CLOSE_RECEIVED = "close received"
    DONE = "done"
    ABORTED = "aborted"


OPEN, ENDING, CLOSING, CLOSE_SENT, CLOSE_RECEIVED, DONE, ABORTED = Phase
"""The phases as plain names for the hot paths: a member looked up on its enum class costs
several times a global's lookup."""

_BEFORE_ANY_CLOSE = (OPEN, ENDING)
_AWAITING_CLOSE = (CLOSING, CLOSE_SENT)


class ConnectionCore:
    """One connection's protocol state and corral's rules on top of it (no I/O)."""

    # Slots: thousands of idle connections each keep one of these.
    __slots__ = (
        "session",
        "options",
        "phase",
        "reason",
        "close_code",
        "close_code_sent",
        "frames_out",
        "dropped",
        "blocked",
        "input_pending",
        "liveness",
        "next_chunk",
        "outbox",
        "_clock",
        "opened_at",
        "_received_at",
        "_handled_at",
        "handling",
        "checked_while_handling",
        "_timing",
    )

    def __init__(
        self,
        session: Session,
        options: ConnectionOptions,
        clock: Callable[[], float],
        timing: TimingListener | None = None,
    ) -> None:
        """``clock``: the time now (trio's); ``timing``: told when SetOptions changes the
        idle timeout, so that the next liveness check is scheduled again (the connection
        itself: no callback object of its own per connection)."""
        self.session = session
        self.options = options
        self.phase = OPEN
        self.reason: TerminateReason | None = None
        """Why the connection ends, once that is decided."""
        self.close_code: int | None = None
        """The code of our close frame, once it is queued."""
        self.close_code_sent: int | None = None
        """The code of our close frame, once it is written in full."""
        self.frames_out = 0
        """Data frames queued for the client (metrics)."""
        self.dropped = 0
        """Frames pushed by other actors and dropped because the outbox was full."""
        self.blocked = False
        """The transport did not take all it was given: only the loop's flush, which waits
        for it, writes until everything queued has gone."""
        self.input_pending = True  # the session may hold bytes read with the request's head
        """Bytes came that ``next_event`` has not given out yet: while False, it would say
        NEED_DATA, and the loop waits for the client without asking (every message's path)."""
        now = self.opened_at = clock()
        """When the connection opened, on ``clock``."""
        self.liveness = Liveness(
            options.idle_timeout, options.ping_interval, options.pong_timeout, now
        )
        self.next_chunk: bytes | None = None  # the one frame queued while nothing else is
        self.outbox: Outbox | None = None  # more than one frame queued
        self._clock = clock
        self._received_at = now
        self._handled_at = now
        self.handling = False
        """websocket_handle is running (the loop sets it, a plain attribute on the hot path):
        a slow handler is not an idle client."""
        self.checked_while_handling = False
        """A liveness check fell while ``handling``: the loop calls ``handling_ended``."""
        self._timing = timing

    # ---- events in: the client --------------------------------------------------------

    def receive_data(self, data: bytes | bytearray) -> None:
        """Bytes the client sent (``b""``: it closed TCP); any byte counts as activity."""
        self.input_pending = True
        self._received_at = self._clock()
        if data:
            self.session.receive_data(bytes(data))
        else:
            self.session.receive_eof()

    def next_event(self) -> Text | Binary | TerminateReason | None:
        """The client's next message, the reason its side ended, or NEED_DATA; what the
        protocol owes the client (pongs, a close reply) joins the bytes to send."""
        session = self.session
        event = session.next_event()
        if session.owes:
            self._queue_owed(session.data_to_send())
        if type(event) is Text or type(event) is Binary:
            self.input_pending = bool(session.unparsed) or session.inflating
            return event
        if event is NEED_DATA:
            self.input_pending = session.inflating
            if session.transport_done and self.phase in _AWAITING_CLOSE:
                self.phase = DONE  # the client's close reply came
            return event
        assert isinstance(event, TerminateReason)
        if self.phase in _BEFORE_ANY_CLOSE:
            self.phase = CLOSE_RECEIVED
            self.reason = self.reason or event
        elif self.phase in _AWAITING_CLOSE:
            self.phase = DONE
        return event

    # ---- events in: callbacks ---------------------------------------------------------

    def apply(self, commands: Commands) -> TerminateReason | None:
        """Carry out what a callback returned, in order: frames are queued, past the
        outbox's bounds if need be (they are owed: the loop waits for room before the next
        event); a Close or Stop queues the close frame and ends the handler
        (HandlerStopped). Nothing is queued once the phase is not OPEN."""
        if commands is None:
            return None
        if type(commands) is Text:  # the common case, directly
            if self.phase is OPEN:
                self.frames_out += 1
                data = self.session.encode_text(commands.data)
                if self.next_chunk is None and self.outbox is None:
                    self.next_chunk = data
                else:
                    self._queue_owed(data)
            return None
        for command in as_command_list(commands):
            if self.phase is not OPEN:
                break  # frames after a close are not sent
            if isinstance(command, (Text, Binary)):
                self.frames_out += 1
                self._queue_owed(self.session.encode(command))
            elif isinstance(command, Ping):
                self._queue_owed(encode_ping(command.data))
            elif isinstance(command, Pong):
                self._queue_owed(encode_pong(command.data))
            elif isinstance(command, (Close, Stop)):
                code, why = (
                    (command.code, command.reason) if isinstance(command, Close) else (1000, "")
                )
                self.close(code, why)
                self.reason = self.reason or HandlerStopped()
                return self.reason
            elif isinstance(command, SetOptions):
                self._set_options(command)
        return None

    def handling_ended(self) -> None:
        """websocket_handle returned after a liveness check fell during it: the client counts
        as active until now. (Without such a check the loop just clears ``handling``.)"""
        self.handling = False
        if self.checked_while_handling:
            self.checked_while_handling = False
            self._handled_at = self._clock()

    # ---- events in: other actors, the clock -------------------------------------------

    def push(self, data: bytes) -> bool | None:
        """Queue a frame another actor pushes, within the outbox's bounds: True if taken,
        False if refused (the phase is not OPEN) or dropped (full while the transport is
        ``blocked``: the overflow policy applies), None if the outbox is full of frames not
        yet offered to the transport: write them, then push again."""
        if self.phase is not OPEN:
            return False
        outbox = self.outbox  # the common cases inline: pushes are per client per message
        if outbox is not None:
            if outbox.has_room_for(len(data)):
                outbox.append(data)
                self.frames_out += 1
                return True
        elif self.next_chunk is None:
            self.next_chunk = data
            self.frames_out += 1
            return True
        elif self.has_room_for(len(data)):
            self._queue_owed(data)
            self.frames_out += 1
            return True
        if not self.blocked:
            return None
        self.dropped += 1
        policy = self.options.outbox_overflow
        if policy is not OutboxPolicy.DROP:
            code = 1013 if policy is OutboxPolicy.CLOSE_1013 else 1008
            self.fail(SlowClient("outbox full: the client is not keeping up", code))
        return False

    def tick(self, now: float) -> float:
        """A liveness check at ``now``: may queue a ping or fail the connection (idle);
        returns when the next check is due (inf: never, or never again)."""
        if self.phase is not OPEN:
            return float("inf")
        if self.handling:
            # The client is not idle, we are (Cowboy restarts its idle timer when a frame
            # is handled, not when it arrives): handling_ended notes when the callback ends.
            self._handled_at = now
            self.checked_while_handling = True
        liveness = self.liveness
        liveness.last_received = max(self._received_at, self._handled_at)
        verdict = liveness.check(now)
        if verdict is Verdict.IDLE or verdict is Verdict.NO_PONG:
            self.fail(IdleTimeout())
            return float("inf")
        if verdict is Verdict.SEND_PING:
            self._queue_owed(encode_ping(KEEPALIVE_PING))  # full: send_timeout's business
        return liveness.next_check(now)

    def next_check(self, now: float) -> float:
        """When the first liveness check is due (inf: never)."""
        return self.liveness.next_check(now)

    # ---- events in: the transport -----------------------------------------------------

    def write_to(self, write: Callable[[Chunk], int], limit: int) -> int:
        """The writer's rule, for a transport's non-blocking ``write`` (it returns how many
        bytes it took, maybe fewer than offered): offer it whole queued chunks of up to
        ``limit`` bytes until it takes fewer or nothing is left. Nothing is offered while
        ``blocked``: then only the loop's flush writes. A ``trio.BrokenResourceError`` from
        ``write`` loses the output (reading will say how the connection ended). Returns the
        bytes taken."""
        taken = 0
        while not self.blocked:
            data: Chunk | None = self.next_chunk
            if data is None:
                if self.outbox is None:
                    break
                data = self.outbox.peek(limit)
            try:
                size = write(data)
            except trio.BrokenResourceError:
                self.lose_output()
                break
            taken += size
            if data is self.next_chunk and size == len(data) and self.close_code is None:
                self.next_chunk = None  # ``sent``'s common case, inline: one chunk, all taken
                if self.outbox is None:
                    break
            elif not self.sent(size, len(data)):
                break
        return taken

    def data_to_send(self, limit: int) -> Chunk:
        """Up to ``limit`` bytes of whole queued chunks (at least one), left queued until
        ``sent`` says how many the transport took; b"" when nothing is owed."""
        if self.next_chunk is not None:
            return self.next_chunk
        outbox = self.outbox
        return outbox.peek(limit) if outbox is not None else b""

    def sent(self, size: int, offered: int) -> bool:
        """The transport took ``size`` of the ``offered`` bytes ``data_to_send`` gave. If it
        took fewer, the core is ``blocked`` until everything queued has gone: only the flush
        that waits for the transport writes, so that no other writer sends bytes it holds.
        Returns whether more is queued."""
        data = self.next_chunk
        if data is not None:
            self.next_chunk = None
            if size < len(data):
                outbox = self.outbox = self._new_outbox()
                outbox.append(data)
                outbox.discard(size)
        elif self.outbox is not None:
            self.outbox.discard(size)
            if not self.outbox:
                self.outbox = None
        if self.next_chunk is not None or self.outbox is not None:
            self.blocked = self.blocked or size < offered  # until everything queued has gone
            return True
        self.blocked = False
        if self.close_code is not None and self.close_code_sent is None:
            self.close_code_sent = self.close_code  # nothing follows a close frame
            if self.phase is CLOSING:
                self.phase = CLOSE_SENT
        return False

    @property
    def queued_bytes(self) -> int:
        """Bytes waiting for the transport to take them."""
        if self.next_chunk is not None:
            return len(self.next_chunk)
        return self.outbox.size if self.outbox is not None else 0

    def has_room_for(self, size: int) -> bool:
        """Whether a frame of ``size`` bytes fits in the outbox's bounds now."""
        if self.outbox is not None:
            return self.outbox.has_room_for(size)
        queued = self.next_chunk
        options = self.options
        return queued is None or (
            options.outbox_capacity > 1 and len(queued) + size <= options.outbox_bytes
        )

    # ---- the end ----------------------------------------------------------------------

    def fail(self, reason: TerminateReason) -> None:
        """End the connection soon for ``reason`` (decided outside the loop: the first
        reason stands); the loop carries it out with ``end``."""
        if self.phase is OPEN:
            self.phase = ENDING
            self.reason = reason

    def close(self, code: int, reason: str) -> None:
        """Queue our close frame behind what is queued (if the outbox is full, behind only
        the end of a frame begun: the frames not begun are dropped)."""
        data = self.session.close(code, reason)
        if not data:
            return
        if not self.has_room_for(len(data)):
            self._drop_unbegun()
        self.close_code = code
        self._queue_owed(data)
        if self.phase in _BEFORE_ANY_CLOSE:
            self.phase = CLOSING

    def end(self, reason: TerminateReason) -> None:
        """The handler is done, for ``reason``: queue what that end owes the client (our
        close frame, or the reply to the client's), or abort for a client too slow to take
        any more (SlowClient 1006)."""
        if self.reason is None:
            self.reason = reason
        if self.phase is ABORTED:
            return
        if isinstance(reason, SlowClient) and reason.code == 1006:
            self.abort()
            return
        if not isinstance(reason, (ClientClosed, ProtocolError)):
            self.close(reason.close_code, "")
        if self.session.owes:
            self._queue_owed(self.session.data_to_send())
        if self.phase in _AWAITING_CLOSE:
            if self.session.transport_done:
                self.phase = DONE
        else:
            self.phase = DONE  # the client's side ended, or nothing more can be sent

    def abort(self) -> None:
        """TCP is reset: drop everything queued; nothing is written any more."""
        self.phase = ABORTED
        self.lose_output()

    def lose_output(self) -> None:
        """The transport is broken: what is queued can never be written; drop it."""
        self.next_chunk = self.outbox = None
        self.blocked = False

    def closed(self) -> None:
        """The transport is closed: nothing is written any more (and the connection's
        callback is let go, so that no reference cycle outlives it)."""
        if self.phase is not ABORTED:
            self.phase = DONE
        self.lose_output()
        self._timing = None

    @property
    def awaits_close(self) -> bool:
        """Whether we sent a close frame and the client's has not come (nor its EOF)."""
        return self.phase in _AWAITING_CLOSE

    # ---- inside -----------------------------------------------------------------------

    def _queue_owed(self, data: bytes) -> None:
        """Queue bytes that must go (past the outbox's bounds if need be)."""
        if not data or self.phase is ABORTED:
            return
        outbox = self.outbox
        if outbox is None:
            queued = self.next_chunk
            if queued is None:
                self.next_chunk = data
                return
            outbox = self.outbox = self._new_outbox()
            outbox.append(queued)
            self.next_chunk = None
        outbox.append(data)

    def _drop_unbegun(self) -> None:
        """Drop every queued frame not begun (counted as dropped)."""
        if self.outbox is not None:
            self.dropped += self.outbox.clear()
            if not self.outbox:
                self.outbox = None
        elif self.next_chunk is not None:
            self.dropped += 1
            self.next_chunk = None

    def _new_outbox(self) -> Outbox:
        return Outbox(self.options.outbox_capacity, self.options.outbox_bytes)

    def _set_options(self, command: SetOptions) -> None:
        changes: dict[str, Any] = command.changes()
        self.options = attrs.evolve(self.options, **changes)
        if "max_message_size" in changes:
            self.session.max_message_size = self.options.max_message_size
        if "idle_timeout" in changes:
            self.liveness.idle_timeout = self.options.idle_timeout
            if self._timing is not None:
                self._timing.timing_changed()
