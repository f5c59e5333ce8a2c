"""Writes held until the current task step is over, so that what one step pushes to a client
leaves in one write.

A publisher whose client sent a burst reads it in one go and broadcasts each message within
one task step: holding each subscriber's frames until that step ends turns one ``send`` per
frame into one per subscriber (and one wake-up on the client's side). The held writes run
together in one callback, a zero-delay timer on the node's timer service: after the step that
held them, with no task woken per connection.
"""

from __future__ import annotations

from collections.abc import Callable

from actors import TimerRef
from actors.timers import TimerService

from .per_node import PerNode

Write = Callable[[], None]


class StepWrites:
    """Callbacks that write held frames, each run once, in the order added, when the task
    step that added them is over."""

    __slots__ = ("_due",)

    def __init__(self) -> None:
        self._due: list[Write] = []

    def add(self, write: Write, timers: TimerService) -> None:
        """Call ``write()`` once the current task step is over (``timers``: the node's)."""
        if not self._due:
            timers.schedule(TimerRef(), 0.0, self._run)
        self._due.append(write)

    def _run(self) -> None:
        due, self._due = self._due, []
        for write in due:
            write()


step_writes_of = PerNode(StepWrites)
"""The held writes of the connections on ``node`` (made on first use)."""
