"""A watchdog for blocked loops: a task step that holds the trio loop too long is reported.

Erlang preempts a busy process; trio cannot, so a callback that computes or blocks for a
second freezes every connection. The watchdog notices without timing every step:

- a trio instrument counts task steps and names the task stepping (``StepTracker``: one
  attribute store and one increment per step, its only per-step cost);
- a watcher thread samples that count four times per threshold (``Holds`` decides). When it
  has not moved since the last sample, the thread pokes the loop (``run_sync_soon``, which
  counts too): an idle loop, waiting for I/O, answers at once; a held one cannot. Past half the
  threshold without a move, the thread looks at the loop thread's stack, from
  ``faulthandler``'s dump (``loop_thread_frames``): the blocking line itself.

Once the step is over, a hold of the threshold or more is counted in the server's tally
(``corral_loop_blocked``) and logged, in the loop, with the handler, route and path of the
connection it ran for. The remedy, in the README: move blocking work off the loop with
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
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from time import perf_counter

import attrs
import trio

from .tally import BlockedStep, Tally

logger = logging.getLogger("corral.server.watchdog")

DEFAULT_THRESHOLD = 0.1
"""Seconds a task step may hold the loop before it is reported (ServerOptions.block_threshold)."""

SAMPLES_PER_THRESHOLD = 4
"""The watcher thread's samples per threshold: a hold is timed to within a quarter threshold."""

STACK_FRAMES = 3
"""Innermost frames of the blocking stack given in the log line."""


def is_blocked(held: float, threshold: float) -> bool:
    """Whether a step that held the loop ``held`` seconds held it too long."""
    return held >= threshold


class StepTracker(trio.abc.Instrument):
    """Counts task steps (and pokes) and names the task stepping now, for the watcher thread
    to read; only the loop's thread writes."""

    task: trio.lowlevel.Task | None = None
    steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.task = task
        self.steps += 1

    def poked(self) -> None:
        """The loop ran the watcher's poke: it is not held."""
        self.steps += 1


@attrs.frozen
class Verdict:
    """What the watcher thread does after a sample: poke the loop (is it only idle?), look at
    the stack now, or report a hold of ``held`` seconds that has just ended."""

    poke: bool = False
    look: bool = False
    held: float | None = None


NOTHING = Verdict()
POKE = Verdict(poke=True)
LOOK = Verdict(look=True)


@attrs.define
class Holds:
    """The watcher thread's decisions, fed samples of the step count (no clock, no thread).

    A step is timed from the first sample that saw it to the first that saw the next one: to
    within one sample period either way.
    """

    threshold: float
    _steps: int = -1
    _since: float = 0.0
    _poked: bool = False
    _looked: bool = False

    def sample(self, now: float, steps: int) -> Verdict:
        """The verdict on the step count ``steps`` seen at ``now``."""
        if steps != self._steps:
            held = now - self._since
            looked = self._looked
            self._steps, self._since, self._poked, self._looked = steps, now, False, False
            if looked and is_blocked(held, self.threshold):
                return Verdict(held=held)
            return NOTHING
        if not self._poked:
            self._poked = True
            return POKE
        if not self._looked and now - self._since >= self.threshold / 2:
            self._looked = True
            return LOOK
        return NOTHING


@attrs.frozen
class Stall:
    """What the watcher thread saw while a step held the loop: the task ("-" if the loop was
    in trio itself), the handler, route and path of the connection it runs, and where."""

    task: str = "-"
    handler: str = "-"
    route: str = ""
    path: str = "-"
    where: str = "-"


class BlockWatchdog:
    """Reports to ``tally`` and the log every task step that holds the loop ``threshold``
    seconds or more. ``run`` it in the loop it watches, until cancelled (``watching`` does)."""

    def __init__(self, threshold: float, tally: Tally) -> None:
        self.threshold = threshold
        self.tally = tally
        self.interval = threshold / SAMPLES_PER_THRESHOLD
        self._tracker = StepTracker()

    async def run(self) -> None:
        """Watch from a thread until cancelled."""
        stop = threading.Event()
        where = partial(_where, threading.get_ident())
        call_soon = trio.lowlevel.current_trio_token().run_sync_soon
        trio.lowlevel.add_instrument(self._tracker)
        try:
            async with trio.open_nursery() as nursery:
                # A limiter of its own: the watcher holds no slot of trio's shared one.
                watcher = partial(trio.to_thread.run_sync, limiter=trio.CapacityLimiter(1))
                nursery.start_soon(watcher, self._watch, stop, where, call_soon)
                try:
                    await trio.sleep_forever()
                finally:
                    stop.set()  # the thread returns within one sample period
        finally:
            trio.lowlevel.remove_instrument(self._tracker)

    def _watch(
        self,
        stop: threading.Event,
        where: Callable[[], str],
        call_soon: Callable[..., object],
    ) -> None:
        """The watcher thread: sample the step count; hand holds over to the loop."""
        holds = Holds(self.threshold)
        stall = Stall()
        while not stop.wait(self.interval):
            verdict = holds.sample(perf_counter(), self._tracker.steps)
            if verdict.poke:
                call_soon(self._tracker.poked)
            elif verdict.look:
                stall = self._look(self._tracker.task, where())
            elif verdict.held is not None:
                call_soon(self.report, verdict.held, stall)

    def _look(self, task: trio.lowlevel.Task | None, where: str) -> Stall:
        """The stall as seen from the watcher thread, while the loop is held: the connection
        is found now, for it may be gone once the step is over."""
        if task is None or where == "-":  # in trio itself, not in a task's code
            return Stall(where=where)
        # One C call copies the dict, so the loop thread cannot change it under the loop.
        for connection, route in list(self.tally.open.items()):
            if task.name == f"actor {connection.actor.address}":
                handler = type(connection.handler).__qualname__
                return Stall(task.name, handler, route, connection.request.path, where)
        return Stall(task.name, where=where)

    def report(self, seconds: float, stall: Stall) -> None:
        """Count and log one step that held the loop ``seconds``."""
        self.tally.blocked[stall.route] += 1
        self.tally.blocked_seconds.observe(seconds)
        self.tally.recent_blocked.append(
            BlockedStep(
                time.time(),
                seconds,
                stall.task,
                stall.handler,
                stall.route,
                stall.path,
                stall.where,
            )
        )
        logger.warning(
            "loop blocked for %.0f ms by %s (handler %s, route %s, path %s) at %s",
            seconds * 1000,
            stall.task,
            stall.handler,
            stall.route or "-",
            stall.path,
            stall.where,
            extra={
                "blocked_ms": round(seconds * 1000, 1),
                "task": stall.task,
                "handler": stall.handler,
                "route": stall.route,
                "path": stall.path,
                "where": stall.where,
            },
        )


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
