"""One task per node runs every timer: a heap of deadlines, not a task per timer.

Ten thousand connections with a ticking timer each cost one sleeping task, and trio's
clock (including MockClock in tests) decides when they fire. A cancelled timer lets go of
its callback at once (the heap keeps only its deadline and reference), so whatever the
callback holds — a closed connection, say — is freed when cancelled, not at the deadline.
Timers due together fire ``TIMERS_PER_PASS`` per scheduler pass, the loop polling I/O
between passes: 5,000 idle timeouts due at once do not stall every other connection.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable

import trio

from .messages import TimerRef

Deliver = Callable[[], None]

TIMERS_PER_PASS = 64
"""Callbacks fired in one scheduler pass: a burst due at the same instant (idle connections
timing out together, each then closing) is spread over passes of bounded work."""


class TimerService:
    """Fires scheduled callbacks at their deadlines; revoked timers are skipped."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerRef]] = []
        self._order = itertools.count()
        self._wakeup = trio.Event()
        self._pending: dict[TimerRef, tuple[float, Deliver]] = {}

    def schedule(self, ref: TimerRef, seconds: float, deliver: Deliver) -> None:
        """Call ``deliver()`` ``seconds`` from now unless ``ref`` is revoked first."""
        if not seconds >= 0 or math.isinf(seconds):
            raise ValueError(f"timer delay must be a finite number >= 0, not {seconds!r}")
        deadline = trio.current_time() + seconds
        self._pending[ref] = (deadline, deliver)
        if not self._heap or deadline < self._heap[0][0]:
            self._wakeup.set()
        heapq.heappush(self._heap, (deadline, next(self._order), ref))

    def remaining(self, ref: TimerRef) -> float | None:
        """Seconds left before ``ref`` fires, or None if it fired or was cancelled."""
        pending = self._pending.get(ref)
        if pending is None or ref.revoked:
            return None
        return max(0.0, pending[0] - trio.current_time())

    def cancel(self, ref: TimerRef) -> float | None:
        """Revoke ``ref``; return the time that was left, or None if it had already fired."""
        left = self.remaining(ref)
        ref.revoked = True
        self._pending.pop(ref, None)
        if len(self._heap) > 64 and len(self._heap) > 2 * len(self._pending):
            self._compact()
        return left

    def discard(self, ref: TimerRef) -> None:
        """Revoke ``ref`` without asking what was left (``cancel`` reads the clock for that)."""
        ref.revoked = True
        if self._pending.pop(ref, None) is not None and len(self._heap) > 2 * len(self._pending):
            if len(self._heap) > 64:
                self._compact()

    async def run(self) -> None:
        """Fire timers forever (until cancelled with the node)."""
        while True:
            self._wakeup = trio.Event()
            with trio.move_on_at(self._next_deadline()):
                await self._wakeup.wait()
            while self._fire_due(trio.current_time()):
                await trio.lowlevel.checkpoint()  # more are due: the loop polls I/O first

    def __len__(self) -> int:
        return len(self._pending)

    def _compact(self) -> None:
        """Drop cancelled entries, so that churn does not grow the heap."""
        self._heap = [entry for entry in self._heap if entry[2] in self._pending]
        heapq.heapify(self._heap)

    def _next_deadline(self) -> float:
        while self._heap and self._heap[0][2] not in self._pending:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else math.inf

    def _fire_due(self, now: float) -> bool:
        """Fire up to ``TIMERS_PER_PASS`` timers due at ``now``; True if more are due."""
        fired = 0
        while self._heap and self._heap[0][0] <= now:
            if fired == TIMERS_PER_PASS:
                return True
            _, _, ref = heapq.heappop(self._heap)
            pending = self._pending.pop(ref, None)
            if pending is not None and not ref.revoked:
                pending[1]()
                fired += 1
        return False
