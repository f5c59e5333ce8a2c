"""A watchdog for blocked loops: a task step that holds the trio loop too long is reported.

Erlang preempts a busy process; trio cannot, so a callback that computes or blocks for a
second freezes every connection. The watchdog notices at no cost per task step:

- a watcher thread pokes the loop four times per threshold (``run_sync_soon``); the loop
  answers a poke at its next turn, within microseconds when nothing holds it. An idle loop is
  not poked, so it is not woken: the thread sees the loop thread used little CPU (its
  ``pthread_getcpuclockid`` clock) and is in trio's wait for I/O (``waits_for_io``);
- a poke unanswered for half the threshold means something holds the loop: the thread looks
  at which task is running (the one whose coroutine is mid-step, found from trio's task tree)
  and, the first time, where: ``faulthandler``'s dump of the loop thread's stack
  (``loop_thread_frames``), the blocking line itself;
- once the poke is answered, a wait of the threshold or more is counted in the server's tally
  (``corral_loop_blocked``) and logged from the loop, with the handler, route and path of the
  connection the task runs, if one task held the loop at every look (``Pokes`` decides).

The remedy, in the README: move blocking work off the loop with
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
from typing import IO

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


@attrs.frozen
class Verdict:
    """What the watcher thread does after a sample: poke the loop, or look at it (a poke has
    waited half the threshold)."""

    poke: bool = False
    look: bool = False


NOTHING = Verdict()
POKE = Verdict(poke=True)
LOOK = Verdict(look=True)


@attrs.define
class Pokes:
    """The watcher's decisions, apart from clocks, threads and trio: when to poke the loop and
    when to look at it; whether an answer came late enough, with one task seen holding the
    loop at every look, to report."""

    threshold: float
    _sent_at: float | None = None
    _holder: object = None
    _looks: int = 0
    _one_task: bool = True

    @property
    def waiting(self) -> bool:
        """Whether a poke is out, not yet answered."""
        return self._sent_at is not None

    def sample(self, now: float) -> Verdict:
        """The verdict at ``now``: poke if no poke is out, look if one has waited too long."""
        if self._sent_at is None:
            self._sent_at = now
            return POKE
        if now - self._sent_at >= self.threshold / 2:
            return LOOK
        return NOTHING

    def seen(self, task: object) -> bool:
        """A look found ``task`` running (None: none, trio's own code); True if it is the
        first look of this wait (then the caller notes where)."""
        self._looks += 1
        if self._looks == 1:
            self._holder = task
            return True
        if task is not self._holder:
            self._one_task = False
        return False

    def answered(self, now: float) -> float | None:
        """The loop answered the poke at ``now``: how long it waited, if that is a hold to
        report (the threshold or more, one task at every look)."""
        held = now - (self._sent_at if self._sent_at is not None else now)
        report = is_blocked(held, self.threshold) and self._one_task
        self._sent_at, self._holder, self._looks, self._one_task = None, None, 0, True
        return held if report else None


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
        self._pokes = Pokes(threshold)
        self._stall = Stall()
        self._lock = threading.Lock()  # the pokes and the stall: both threads use them

    async def run(self) -> None:
        """Watch from a thread until cancelled."""
        stop = threading.Event()
        loop = LoopThread(threading.get_ident(), trio.lowlevel.current_root_task())
        call_soon = trio.lowlevel.current_trio_token().run_sync_soon
        async with trio.open_nursery() as nursery:
            # A limiter of its own: the watcher holds no slot of trio's shared one.
            watcher = partial(trio.to_thread.run_sync, limiter=trio.CapacityLimiter(1))
            nursery.start_soon(watcher, self._watch, stop, loop, call_soon)
            try:
                await trio.sleep_forever()
            finally:
                stop.set()  # the thread returns within one sample period

    def _watch(
        self, stop: threading.Event, loop: LoopThread, call_soon: Callable[..., object]
    ) -> None:
        """The watcher thread: poke the loop unless it is idle; look at it while a poke
        waits too long."""
        with tempfile.TemporaryFile("w+") as dump:
            while not stop.wait(self.interval):
                busy = loop.cpu_used() >= self.interval / 4
                with self._lock:
                    if not (self._pokes.waiting or busy) and waits_for_io(loop.frames(dump)):
                        continue  # idle: nothing to poke
                    verdict = self._pokes.sample(perf_counter())
                    if verdict.poke:
                        call_soon(self._answered)
                    elif verdict.look:
                        task = running_task(loop.root)
                        if self._pokes.seen(task):
                            self._stall = self._look(task, describe_frames(loop.frames(dump)))

    def _answered(self) -> None:
        """In the loop: the poke ran; report the wait if it was a hold."""
        with self._lock:
            held = self._pokes.answered(perf_counter())
            stall, self._stall = self._stall, Stall()
        if held is not None:
            self.report(held, stall)

    def _look(self, task: trio.lowlevel.Task | None, where: str) -> Stall:
        """The stall as seen from the watcher thread, while the loop is held: the connection
        is found now, for it may be gone once the step is over."""
        if task is None:  # in trio itself, not in a task's code
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


def running_task(root: trio.lowlevel.Task | None) -> trio.lowlevel.Task | None:
    """The task below ``root`` whose coroutine is mid-step, if any, from trio's task tree
    (its public ``child_nurseries``, ``child_tasks`` and ``coro``); safe from another thread,
    each of those being a copy made in one C call."""
    tasks = [root] if root is not None else []
    while tasks:
        task = tasks.pop()
        if getattr(task.coro, "cr_running", False):
            return task
        for nursery in task.child_nurseries:
            tasks.extend(nursery.child_tasks)
    return None


class LoopThread:
    """The thread running the trio loop, as the watcher thread sees it."""

    def __init__(self, ident: int, root: trio.lowlevel.Task | None) -> None:
        self.ident = ident
        self.root = root
        self._clock = time.pthread_getcpuclockid(ident)
        self._cpu = time.clock_gettime(self._clock)

    def cpu_used(self) -> float:
        """CPU seconds the loop thread used since the last call."""
        cpu = time.clock_gettime(self._clock)
        used, self._cpu = cpu - self._cpu, cpu
        return used

    def frames(self, dump: IO[str]) -> list[tuple[str, int, str]]:
        """Its stack now, innermost first, from a ``faulthandler`` dump into ``dump``."""
        dump.seek(0)
        dump.truncate()
        faulthandler.dump_traceback(dump, all_threads=True)
        dump.seek(0)
        return loop_thread_frames(dump.read(), self.ident)


def waits_for_io(frames: list[tuple[str, int, str]]) -> bool:
    """Whether a loop thread with this stack is idle: its innermost frame is trio's wait for
    I/O (``get_events``, in every one of trio's I/O managers)."""
    return bool(frames) and frames[0][0].startswith(_TRIO_DIR) and frames[0][2] == "get_events"


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
