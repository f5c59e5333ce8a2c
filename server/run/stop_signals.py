"""SIGINT and SIGTERM in a server process: the first drains, the second exits at once.

The first signal reaches the loop through ``run_sync_soon``; the second exits from the signal
handler itself, after logging what the loop was running and where. Python runs a handler in
the main thread between two bytecodes, or when a blocking call there is interrupted (a sleep,
a lock, a socket read, all retried after the handler), so the second signal ends the process
even while a task holds the loop forever: the loop would never run a handler of its own, and
the handler's frame is the blocking line. A C call that never checks for signals delays both
signals until it returns; SIGKILL remains.

The signals are not blocked for a thread to wait on them (``sigwait``): a blocked signal
stays blocked in every process the server starts.
"""

from __future__ import annotations

import logging
import os
import signal
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

import trio

from ..ops.loop_view import describe_frames, stall_of
from ..ops.stats import ServerStats

logger = logging.getLogger("corral.server")

EXIT_AT_ONCE = 130
"""The status of an exit at the second signal (128 + SIGINT, as a shell reports ^C)."""

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def stop_signals(
    first: Callable[[], None], stats: Callable[[], ServerStats | None]
) -> Iterator[None]:
    """For the block: the first SIGINT/SIGTERM calls ``first()`` in the loop; the second
    exits with ``EXIT_AT_ONCE``, naming the task the loop was running (its connection found
    in ``stats()``, when the server has one yet) and its line. Enter it in the loop's thread,
    the main thread."""
    call_soon = trio.lowlevel.current_trio_token().run_sync_soon
    received: list[signal.Signals] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        received.append(signal.Signals(signum))
        if len(received) == 1:
            logger.info("%s: draining", name)
            call_soon(first)
            return
        running = _running(frame, stats())
        logger.warning("second %s: exiting at once%s", name, running, extra={"running": running})
        os._exit(EXIT_AT_ONCE)

    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _running(frame: FrameType | None, stats: ServerStats | None) -> str:
    """What the loop was running when a signal handler interrupted ``frame`` (in the main
    thread): a task and its line, or nothing if it was between task steps."""
    try:
        task: trio.lowlevel.Task | None = trio.lowlevel.current_task()
    except RuntimeError:  # between task steps: trio's scheduler, or its wait for I/O
        return ""
    frames = [
        (walked.f_code.co_filename, line, walked.f_code.co_name)
        for walked, line in traceback.walk_stack(frame)
    ]
    stall = stall_of(task, describe_frames(frames, limit=None), stats or ServerStats())
    return f"; the loop was running {stall.describe()}"
