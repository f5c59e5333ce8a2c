"""A bounded mailbox on a trio memory channel, with a declared overflow policy.

Senders never block unless they ask to (``put``); what a full mailbox does is the
receiving actor's choice, declared once. The runtime's own notifications (timer
deliveries, ``Down``, ``Exit``) are never dropped: when the channel is full they wait in a
small system lane that ``get`` reads first, as Erlang never loses a signal. Revoked
messages (cancelled timers, removed monitors) are skipped on the way out.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs
import trio

from .address import Address
from .errors import MailboxFull
from .messages import Exit, Revocable, unwrap


class Overflow(enum.Enum):
    """What a full mailbox does with one more message."""

    DROP_NEWEST = "drop_newest"
    """Discard the incoming message (counted)."""
    DROP_OLDEST = "drop_oldest"
    """Discard the oldest queued message to make room (counted)."""
    FAIL = "fail"
    """Refuse it: the sender gets MailboxFull (publish just counts it as not taken)."""
    EXIT = "exit"
    """Discard it and stop the owning actor with reason mailbox_overflow."""


@attrs.frozen
class MailboxStatistics:
    """A snapshot of one mailbox, in the manner of trio's channel statistics."""

    length: int
    capacity: int
    overflow: Overflow
    received: int
    dropped: int
    waiting_senders: int
    closed: bool


class Mailbox:
    """The receiving end of an actor: bounded, with an overflow policy and counters."""

    def __init__(
        self,
        owner: Address,
        capacity: int,
        overflow: Overflow,
        on_overflow_exit: Callable[[], None],
    ) -> None:
        if not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"mailbox capacity must be an int >= 1, not {capacity!r}")
        self.owner = owner
        self.capacity = capacity
        self.overflow = overflow
        self.received = 0
        self.dropped = 0
        self._on_overflow_exit = on_overflow_exit
        self._closed = False
        self._system: deque[Any] | None = None  # made on first need
        self._send, self._receive = trio.open_memory_channel[Any](capacity)

    def put_nowait(self, msg: Any) -> bool:
        """Queue ``msg`` without waiting; on a full mailbox apply the policy.

        Returns whether the message was queued. Raises MailboxFull under ``fail``.
        A closed mailbox (its actor has ended) takes nothing and returns False.
        """
        try:
            self._send.send_nowait(msg)
        except trio.WouldBlock:
            return self._overflowed(msg)
        except trio.ClosedResourceError:
            return False
        self.received += 1
        return True

    def offer(self, msg: Any) -> bool:
        """Like put_nowait, but ``fail`` refuses quietly, counted as dropped (for fan-out)."""
        try:
            return self.put_nowait(msg)
        except MailboxFull:
            self.dropped += 1
            return False

    def put_system(self, msg: Any) -> bool:
        """Queue a runtime notification, past the capacity if need be (never dropped)."""
        if self._closed:
            return False
        try:
            self._send.send_nowait(msg)
        except trio.WouldBlock:
            # Full, so the receiver is not blocked: get() takes this lane first.
            self._to_system_lane(msg)
        self.received += 1
        return True

    async def put(self, msg: Any) -> bool:
        """Queue ``msg``, waiting for room (backpressure). False if the actor ended meanwhile."""
        try:
            await self._send.send(msg)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        self.received += 1
        return True

    async def get(self) -> Any:
        """Wait for the next message that has not been revoked."""
        return unwrap(await self.get_envelope())

    async def get_envelope(self) -> Any:
        """The next unrevoked message as queued, a timer's or monitor's still in its envelope.

        For a consumer that handles it later (a connection's pump hands messages to its
        loop): ``unwrap`` at that point honours a cancel that came in between.
        """
        while True:
            msg = self._system.popleft() if self._system else await self._receive.receive()
            if type(msg) is not Revocable or not msg.ref.revoked:
                return msg

    def get_nowait(self) -> Any:
        """The next unrevoked message, or raise trio.WouldBlock."""
        while True:
            msg = self._system.popleft() if self._system else self._receive.receive_nowait()
            if type(msg) is not Revocable or not msg.ref.revoked:
                return unwrap(msg)

    def close(self) -> None:
        """Refuse further messages and discard what is queued (the actor has ended)."""
        self._closed = True
        self._system = None
        self._send.close()
        self._receive.close()

    def __len__(self) -> int:
        return self._send.statistics().current_buffer_used + len(self._system or ())

    def statistics(self) -> MailboxStatistics:
        """A snapshot: length, capacity, policy, counters."""
        stats = self._send.statistics()
        return MailboxStatistics(
            length=stats.current_buffer_used + len(self._system or ()),
            capacity=self.capacity,
            overflow=self.overflow,
            received=self.received,
            dropped=self.dropped,
            waiting_senders=stats.tasks_waiting_send,
            closed=self._closed,
        )

    def _overflowed(self, msg: Any) -> bool:
        if self.overflow is Overflow.DROP_OLDEST:
            return self._evict_oldest_for(msg)
        if self.overflow is Overflow.FAIL:
            raise MailboxFull(self.owner, self.capacity)
        self.dropped += 1
        if self.overflow is Overflow.EXIT:
            self._on_overflow_exit()
        return False

    def _evict_oldest_for(self, msg: Any) -> bool:
        # Evicting can let a sender blocked in put() take the freed slot, so loop.
        while True:
            try:
                victim = self._receive.receive_nowait()
            except trio.WouldBlock:
                victim = None
            if type(victim) is Revocable or type(victim) is Exit:
                self._to_system_lane(victim)  # a runtime notification is never dropped
            elif victim is not None:
                self.dropped += 1
            try:
                self._send.send_nowait(msg)
            except trio.WouldBlock:
                continue
            self.received += 1
            return True

    def _to_system_lane(self, msg: Any) -> None:
        if self._system is None:
            self._system = deque()
        self._system.append(msg)
