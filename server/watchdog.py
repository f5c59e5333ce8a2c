"""A watchdog for blocked loops: a task step that holds the trio loop too long is reported.

Erlang preempts a busy process; trio cannot, so a callback that computes or blocks for a
second freezes every connection. The watchdog notices without timing every step:

- a heartbeat task wakes every quarter threshold and notes how late it woke: a late heartbeat
  means something held the loop (``is_blocked``);
- a watcher thread looks at the heartbeat; while the loop is stalled it notes which task holds
  it (a trio instrument's ``before_task_step``, one attribute store per step, is the only
  per-step cost) and where that task is, from ``faulthandler``'s dump of the loop thread's
  stack (``loop_thread_frames``): the blocking line itself.

Once the loop is free, the heartbeat counts the stall in the server's tally
(``corral_loop_blocked``) and logs it with the handler, route and path of the connection it
ran for. The remedy, in the README: move blocking work off the loop with
``await trio.to_thread.run_sync(fn)``.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from time import perf_counter

import attrs
import trio

from .tally import BlockedStep, Tally

logger = logging.getLogger("corral.server.watchdog")

DEFAULT_THRESHOLD = 0.1
"""Seconds the loop may be held before it is reported (ServerOptions.block_threshold)."""

BEATS_PER_THRESHOLD = 4
"""Heartbeats per threshold: a stall is measured to within a quarter threshold."""

STACK_FRAMES = 3
"""Innermost frames of the blocking stack given in the log line."""


def is_blocked(lateness: float, threshold: float) -> bool:
    """Whether a heartbeat ``lateness`` seconds late means the loop was held too long."""
    return lateness >= threshold


class StepTracker(trio.abc.Instrument):
    """Remembers the task whose step runs now, for the watcher thread to read."""

    task: trio.lowlevel.Task | None = None

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.task = task


@attrs.frozen
class Stall:
    """What the watcher thread saw while the loop was held: the task stepping, and where."""

    task: trio.lowlevel.Task | None
    where: str


UNSEEN = Stall(None, "-")
"""A stall the watcher thread could not look at (it did not get the GIL in time)."""


class BlockWatchdog:
    """Reports to ``tally`` and the log every stall of the loop of ``threshold`` seconds or
    more. ``run`` it in the loop it watches, until cancelled (``watching`` does)."""

    def __init__(self, threshold: float, tally: Tally) -> None:
        self.threshold = threshold
        self.tally = tally
        self.interval = threshold / BEATS_PER_THRESHOLD
        self._tracker = StepTracker()
        self._lock = threading.Lock()  # guards the two fields the watcher thread shares
        self._beat_at = perf_counter()
        self._stall: Stall | None = None

    async def run(self) -> None:
        """Beat, and watch from a thread, until cancelled."""
        stop = threading.Event()
        loop_thread = threading.get_ident()
        trio.lowlevel.add_instrument(self._tracker)
        try:
            async with trio.open_nursery() as nursery:
                # A limiter of its own: the watcher holds no slot of trio's shared one.
                watcher = partial(trio.to_thread.run_sync, limiter=trio.CapacityLimiter(1))
                nursery.start_soon(watcher, self._watch, stop, loop_thread, name="watchdog thread")
                try:
                    await self._beat()
                finally:
                    stop.set()  # the thread returns within one check
        finally:
            trio.lowlevel.remove_instrument(self._tracker)

    async def _beat(self) -> None:
        while True:
            with self._lock:
                self._beat_at = perf_counter()
            await trio.sleep(self.interval)
            with self._lock:
                lateness = perf_counter() - self._beat_at - self.interval
                stall, self._stall = self._stall, None
            if is_blocked(lateness, self.threshold):
                self.report(lateness, stall or UNSEEN)

    def _watch(self, stop: threading.Event, loop_thread: int) -> None:
        """The watcher thread: every half beat, look at a loop held past half the threshold."""
        while not stop.wait(self.interval / 2):
            with self._lock:
                held = perf_counter() - self._beat_at - self.interval
                if self._stall is None and held >= self.threshold / 2:
                    self._stall = Stall(self._tracker.task, _where(loop_thread))

    def report(self, seconds: float, stall: Stall) -> None:
        """Count and log one stall of ``seconds``."""
        task = stall.task.name if stall.task is not None else "-"
        handler, route, path = self._connection_of(task)
        self.tally.blocked[route] += 1
        self.tally.blocked_seconds.observe(seconds)
        self.tally.recent_blocked.append(
            BlockedStep(time.time(), seconds, task, handler, route, path, stall.where)
        )
        logger.warning(
            "loop blocked for %.0f ms by %s (handler %s, route %s, path %s) at %s",
            seconds * 1000,
            task,
            handler,
            route or "-",
            path,
            stall.where,
            extra={
                "blocked_ms": round(seconds * 1000, 1),
                "task": task,
                "handler": handler,
                "route": route,
                "path": path,
                "where": stall.where,
            },
        )

    def _connection_of(self, task: str) -> tuple[str, str, str]:
        """Handler class, route pattern and path of the connection run by the task named
        ``task``, if any."""
        for connection, route in self.tally.open.items():
            if task == f"actor {connection.actor.address}":
                handler = type(connection.handler).__qualname__
                return handler, route, connection.request.path
        return "-", "", "-"


@asynccontextmanager
async def watching(threshold: float | None, tally: Tally) -> AsyncIterator[None]:
    """Run a ``BlockWatchdog`` for the body's duration (none if ``threshold`` is None)."""
    if threshold is None:
        yield
        return
    async with trio.open_nursery() as nursery:
        nursery.start_soon(BlockWatchdog(threshold, tally).run, name="watchdog")
        try:
            yield
        finally:
            nursery.cancel_scope.cancel()


def _where(loop_thread: int) -> str:
    """The innermost frames of the loop thread's stack, from a ``faulthandler`` dump."""
    with tempfile.TemporaryFile("w+") as dump:
        faulthandler.dump_traceback(dump, all_threads=True)
        dump.seek(0)
        return describe_frames(loop_thread_frames(dump.read(), loop_thread))


_THREAD = re.compile(r"^(?:Current thread|Thread) (0x[0-9a-fA-F]+)")
_FRAME = re.compile(r'^  File "(.*)", line (\d+) in (.*)$')


def loop_thread_frames(dump: str, thread: int) -> list[tuple[str, int, str]]:
    """(file, line, function) of ``thread``'s frames in a ``faulthandler`` dump, innermost
    first; empty if the dump has no such thread."""
    frames: list[tuple[str, int, str]] = []
    current: int | None = None
    for line in dump.splitlines():
        header = _THREAD.match(line)
        if header is not None:
            current = int(header.group(1), 16)
            continue
        frame = _FRAME.match(line)
        if frame is not None and current == thread:
            frames.append((frame.group(1), int(frame.group(2)), frame.group(3)))
    return frames


def describe_frames(frames: list[tuple[str, int, str]]) -> str:
    """The innermost frames outside trio itself, as ``file:line in function``, innermost
    first ("-" if there are none)."""
    shown = [frame for frame in frames if not frame[0].startswith(_TRIO_DIR)][:STACK_FRAMES]
    described = [f"{os.path.basename(path)}:{line} in {function}" for path, line, function in shown]
    return " <- ".join(described) or "-"


_TRIO_DIR = os.path.dirname(trio.__file__) + os.sep
