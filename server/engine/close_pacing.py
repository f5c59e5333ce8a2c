"""Spreading a burst of connection closes over scheduler passes, so it cannot stall the loop.

trio runs every task that one I/O poll woke in a single batch before it polls again. When
9,000 clients close at once, 9,000 close paths (the reply frame's write, close(2),
``terminate``, the actor's exit) would run back to back while every other connection
waits for seconds. A turnstile lets at most ``CLOSES_PER_PASS`` connections start closing
per pass; the rest wait for later passes, and the loop polls I/O between passes.
"""

from __future__ import annotations

import trio
from trio.lowlevel import RunVar

CLOSES_PER_PASS = 32
"""Connections that may start closing in one scheduler pass: enough to close tens of
thousands per second, few enough that a pass of closes costs milliseconds."""

_turnstile: RunVar[trio.Semaphore] = RunVar("corral.server.closing_turnstile")


async def wait_closing_turn() -> None:
    """Return in a scheduler pass that lets at most ``CLOSES_PER_PASS`` tasks through.

    Acquiring is a schedule point, so a task that finds a free slot goes on in the next
    pass; releasing there hands the slot to one waiting task, which goes on a pass later.
    No slot is held after this returns: a slow close never blocks the others.
    """
    try:
        gate = _turnstile.get()
    except LookupError:
        gate = trio.Semaphore(CLOSES_PER_PASS)
        _turnstile.set(gate)
    async with gate:
        pass
