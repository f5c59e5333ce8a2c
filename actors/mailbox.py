"""A bounded mailbox with a declared overflow policy: one queue, in arrival order.

Senders never block unless they ask to (``put``); what a full mailbox does is the
receiving actor's choice, declared once. The runtime's own notifications (timer
deliveries, ``Down``, ``Exit``) are never dropped: they are queued past the capacity if
need be, as Erlang never loses a signal. An actor that also waits on something else (a
socket) asks to be woken by the next arrival (``wake_on_arrival``). Revoked messages
(cancelled timers, removed monitors) are skipped on the way out.

It is built on trio's low-level parking rather than a memory channel: an idle actor then
costs one waiting task and no buffer (the queue exists only while messages wait).
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
from .messages import REVOKED, Exit, Revocable


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
    """The receiving end of an actor: bounded, with an overflow policy and counters.

    One task receives at a time (the actor's); a second concurrent ``get`` raises
    trio.BusyResourceError.
    """

    __slots__ = (
        "owner",
        "capacity",
        "overflow",
        "received",
        "dropped",
        "_on_overflow_exit",
        "_closed",
        "_queue",
        "_exempt",
        "_receiver",
        "_senders",
        "_waker",
    )

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
        self._queue: deque[Any] | None = None  # made on arrival, dropped once drained
        self._exempt = 0  # queued items outside the capacity: the runtime's notifications
        self._receiver: trio.lowlevel.Task | None = None
        self._senders: trio.lowlevel.ParkingLot | None = None  # put() waiting for room
        self._waker: Callable[[], None] | None = None  # wake_on_arrival's callback

    # ---- in -------------------------------------------------------------------------

    def put_nowait(self, msg: Any) -> bool:
        """Queue ``msg`` without waiting; on a full mailbox apply the policy.

        Returns whether the message was queued. Raises MailboxFull under ``fail``.
        A closed mailbox (its actor has ended) takes nothing and returns False.
        """
        if self._closed:
            return False
        if self._is_full():
            return self._overflowed(msg)
        self._append(msg)
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
        self._append(msg if type(msg) in _NEVER_EVICTED else _Notice(msg))
        return True

    async def put(self, msg: Any) -> bool:
        """Queue ``msg``, waiting for room (backpressure). False if the actor ended meanwhile."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if not self._is_full():
            return await self._append_at_checkpoint(msg)
        while self._is_full():
            if self._senders is None:
                self._senders = trio.lowlevel.ParkingLot()
            await self._senders.park()
        return self._append_unless_closed(msg)

    # ---- out ------------------------------------------------------------------------

    async def get(self) -> Any:
        """Wait for the next message that has not been revoked (ClosedResourceError once
        the actor has ended)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        waited = False
        while True:
            while self._queue:
                msg = self._pop(self._queue)
                if msg is REVOKED:
                    continue
                if not waited:
                    await trio.lowlevel.cancel_shielded_checkpoint()
                return msg
            # Inline rather than a helper: one coroutine frame less per idle actor.
            if self._closed:
                raise trio.ClosedResourceError("the mailbox is closed: its actor has ended")
            if self._receiver is not None:
                raise trio.BusyResourceError("another task is already receiving from this mailbox")
            self._receiver = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(self._abort_get)
            waited = True

    def get_nowait(self) -> Any:
        """The next unrevoked message, or raise trio.WouldBlock."""
        while self._queue:
            msg = self._pop(self._queue)
            if msg is not REVOKED:
                return msg
        if self._closed:
            raise trio.ClosedResourceError("the mailbox is closed: its actor has ended")
        raise trio.WouldBlock

    def wake_on_arrival(self, wake: Callable[[], None] | None) -> None:
        """Call ``wake()`` once, at the next arrival, if no task waits in ``get`` then.

        For an actor that waits on something else as well (a socket): it waits there, and
        ``wake`` interrupts that wait. None withdraws the request.
        """
        self._waker = wake

    def close(self) -> None:
        """Refuse further messages and discard what is queued (the actor has ended)."""
        self._closed = True
        self._on_overflow_exit = _nothing  # the actor's method: its cycle would outlive it
        self._queue = None
        self._exempt = 0
        if self._senders is not None:
            self._senders.unpark_all()
        self._wake_receiver()

    # ---- figures --------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._queue) if self._queue else 0

    def statistics(self) -> MailboxStatistics:
        """A snapshot: length, capacity, policy, counters."""
        return MailboxStatistics(
            length=len(self),
            capacity=self.capacity,
            overflow=self.overflow,
            received=self.received,
            dropped=self.dropped,
            waiting_senders=len(self._senders or ()),
            closed=self._closed,
        )

    # ---- inside -----------------------------------------------------------------------

    def _is_full(self) -> bool:
        """Whether the messages under the capacity (all but notifications) fill it."""
        return not self._closed and len(self) - self._exempt >= self.capacity

    def _append(self, item: Any) -> None:
        if self._queue is None:
            self._queue = deque()
        self._queue.append(item)
        self.received += 1
        kind = type(item)
        if kind in _NEVER_EVICTED:
            self._exempt += 1
        self._wake_receiver()

    async def _append_at_checkpoint(self, item: Any) -> bool:
        """Append without having waited; still a checkpoint, as every trio operation is."""
        queued = self._append_unless_closed(item)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return queued

    def _append_unless_closed(self, item: Any) -> bool:
        if self._closed:
            return False
        self._append(item)
        return True

    def _pop(self, queue: deque[Any]) -> Any:
        """Take the oldest item, keep the counts, open its envelope: the message, or REVOKED."""
        msg = queue.popleft()
        if not queue:
            self._queue = None  # an idle actor keeps no buffer
        kind = type(msg)
        if kind in _NEVER_EVICTED:
            self._exempt -= 1
            if kind is Revocable:
                return REVOKED if msg.ref.revoked else msg.payload
            elif kind is _Notice:
                return msg.message
        elif self._senders:
            self._senders.unpark()
        return msg

    def _abort_get(self, _: Any) -> trio.lowlevel.Abort:
        self._receiver = None
        return trio.lowlevel.Abort.SUCCEEDED

    def _wake_receiver(self) -> None:
        receiver, self._receiver = self._receiver, None
        if receiver is not None:
            trio.lowlevel.reschedule(receiver)
        elif self._waker is not None:
            wake, self._waker = self._waker, None
            wake()

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
        """Drop the oldest plain message to make room for ``msg`` (full: there is one)."""
        self.dropped += 1
        queue = self._queue
        assert queue is not None  # full, with a capacity of at least one
        for index, victim in enumerate(queue):
            if type(victim) not in _NEVER_EVICTED:
                del queue[index]
                self._append(msg)
                return True
        raise AssertionError("a full mailbox holds a plain message")


@attrs.frozen
class _Notice:
    """A notification of another type (put_system), kept outside the capacity like the rest."""

    message: Any


_NEVER_EVICTED = frozenset({Revocable, Exit, _Notice})
"""Queued outside the capacity, never evicted: the runtime's notifications."""


def _nothing() -> None:
    """A closed mailbox's overflow callback: it takes no messages, so it never overflows."""
