"""A watchdog for blocked loops: a task step that holds the trio loop too long is reported.

Erlang preempts a busy process; trio cannot, so a callback that computes or blocks for a
second freezes every connection. The watchdog notices at no cost per task step:

- a watcher thread pokes the loop four times per threshold (``run_sync_soon``); the loop
  answers a poke at its next turn, within microseconds when nothing holds it. An idle loop
  is not poked, so it is not woken: an instrument's public ``before_io_wait`` and
  ``after_io_wait`` hooks tell the thread that the loop is in trio's wait for I/O. They cost
  about a microsecond per scheduler pass, so the instrument is there only while the loop is
  quiet (``wants_io_flag``): a busy loop is poked anyway;
- a poke unanswered for half the threshold means something holds the loop: the thread looks
  at which task is running (the one whose coroutine is mid-step, found from trio's task tree)
  and, for each task it finds there, where: ``faulthandler``'s dump of the loop thread's stack
  (``loop_thread_frames``), the blocking line itself;
- while the poke waits, the hold is logged from the thread at the threshold, then every
  ``still_held_every`` seconds with the whole stack: a task that never yields is reported
  although the loop never answers;
- once the poke is answered, a wait of the threshold or more is counted in the server's stats
  (``corral_loop_blocked``) and logged from the loop, with the handler, route and path of the
  connection each task that held it runs (one task, or several back to back).

The remedy, in the README: move blocking work off the loop with
``await trio.to_thread.run_sync(fn)``.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from time import perf_counter
from typing import IO

import attrs
import trio

from .loop_view import LoopThread, Stall, describe_frames, running_task, stall_of
from .stats import BlockedStep, ServerStats

logger = logging.getLogger("corral.server.watchdog")

DEFAULT_THRESHOLD = 0.1
"""Seconds a task step may hold the loop before it is reported (ServerOptions.block_threshold)."""

SAMPLES_PER_THRESHOLD = 4
"""The watcher thread's samples per threshold: a hold is timed to within a quarter threshold."""

STILL_HELD_EVERY = 5.0
"""Seconds between the log lines of a hold still going on (the first is at the threshold)."""

HOLDERS_SHOWN = 3
"""Tasks described in the report of a hold made of several tasks' steps (the first ones)."""

QUIET = 0.05
"""Share of a core under which the loop is quiet: the idle instrument goes in."""

BUSY = 0.1
"""Share of a core over which the loop is busy: the idle instrument comes out (poking a loop
that busy costs it nothing it would notice)."""


def is_blocked(held: float, threshold: float) -> bool:
    """Whether a step that held the loop ``held`` seconds held it too long."""
    return held >= threshold


def wants_io_flag(installed: bool, cpu: float, wall: float) -> bool:
    """Whether the idle instrument should be in the loop, which used ``cpu`` seconds of its
    thread in the last ``wall`` seconds: in when quiet, out when busy, as it was between."""
    share = cpu / wall if wall > 0 else 1.0
    if share < QUIET:
        return True
    if share > BUSY:
        return False
    return installed


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
    when to look at it; which tasks held it during a wait; when to tell of a hold still going
    on; whether an answer came late enough to report."""

    threshold: float
    still_held_every: float = STILL_HELD_EVERY
    _sent_at: float | None = None
    _holders: list[object] = attrs.field(factory=list)
    _told_at: float | None = None

    @property
    def waiting(self) -> bool:
        """Whether a poke is out, not yet answered."""
        return self._sent_at is not None

    @property
    def sent_at(self) -> float | None:
        """When the poke out was sent (None: none is out); it names the wait."""
        return self._sent_at

    @property
    def holders(self) -> int:
        """How many tasks the looks of this wait found holding the loop."""
        return len(self._holders)

    def sample(self, now: float) -> Verdict:
        """The verdict at ``now``: poke if no poke is out, look if one has waited too long."""
        if self._sent_at is None:
            self._sent_at = now
            return POKE
        if now - self._sent_at >= self.threshold / 2:
            return LOOK
        return NOTHING

    def seen(self, task: object) -> bool:
        """A look found ``task`` running (None: none, trio's own code); True if no look of
        this wait had found it and it is among the first ``HOLDERS_SHOWN`` (then the caller
        notes where)."""
        if any(task is holder for holder in self._holders):
            return False
        self._holders.append(task)
        return len(self._holders) <= HOLDERS_SHOWN

    def still_held(self, now: float) -> float | None:
        """How long the unanswered poke has waited, if the hold is to be told of now: once
        it reaches the threshold, then every ``still_held_every`` seconds."""
        if self._sent_at is None:
            return None
        if self._told_at is None:
            due = is_blocked(now - self._sent_at, self.threshold)
        else:
            due = now - self._told_at >= self.still_held_every
        if not due:
            return None
        self._told_at = now
        return now - self._sent_at

    def answered(self, now: float) -> float | None:
        """The loop answered the poke at ``now``: how long it waited, if that is a hold to
        report (the threshold or more, by one task or by several back to back)."""
        held = now - (self._sent_at if self._sent_at is not None else now)
        self._sent_at, self._told_at = None, None
        self._holders.clear()
        return held if is_blocked(held, self.threshold) else None


def describe_holders(stalls: Sequence[Stall], count: int) -> str:
    """The tasks that held the loop during one wait: one described, or ``count`` of which
    the first few are."""
    described = "; ".join(stall.describe() for stall in stalls)
    return described if count <= 1 else f"{count} tasks: {described}"


class IoWaitFlag(trio.abc.Instrument):
    """Whether the loop is in trio's wait for I/O, from the public hooks trio calls around
    that wait: once per scheduler pass, never per task step."""

    def __init__(self) -> None:
        self.waiting = False

    def before_io_wait(self, timeout: float) -> None:
        self.waiting = True

    def after_io_wait(self, timeout: float) -> None:
        self.waiting = False


class BlockWatchdog:
    """Reports to ``stats`` and the log every wait of ``threshold`` seconds or more that task
    steps (one long one, or several back to back) make the loop's other tasks wait, and a
    hold still going on every ``still_held_every`` seconds. ``run`` it in the loop it
    watches, until cancelled (``watching`` does)."""

    def __init__(
        self, threshold: float, stats: ServerStats, still_held_every: float = STILL_HELD_EVERY
    ) -> None:
        self.threshold = threshold
        self.stats = stats
        self.interval = threshold / SAMPLES_PER_THRESHOLD
        self._pokes = Pokes(threshold, still_held_every)
        self._stalls: list[Stall] = []
        self._lock = threading.Lock()  # the pokes and the stalls: both threads use them
        self._io: IoWaitFlag | None = None  # in the loop while it is quiet; the thread reads it
        self._running = False
        self._cpu_at = (time.thread_time(), perf_counter())  # the loop thread's, at the last answer

    async def run(self) -> None:
        """Watch from a thread until cancelled."""
        stop = threading.Event()
        loop = LoopThread(threading.get_ident(), trio.lowlevel.current_root_task())
        call_soon = trio.lowlevel.current_trio_token().run_sync_soon
        self._cpu_at = (time.thread_time(), perf_counter())
        self._running = True
        try:
            async with trio.open_nursery() as nursery:
                # A limiter of its own: the watcher holds no slot of trio's shared one.
                watcher = partial(trio.to_thread.run_sync, limiter=trio.CapacityLimiter(1))
                nursery.start_soon(watcher, self._watch, stop, loop, call_soon)
                try:
                    await trio.sleep_forever()
                finally:
                    stop.set()  # the thread returns within one sample period
        finally:
            self._running = False  # a poke answered later leaves the loop as it is
            self._use_io_flag(False)

    def _watch(
        self, stop: threading.Event, loop: LoopThread, call_soon: Callable[..., object]
    ) -> None:
        """The watcher thread: poke the loop unless it is idle; look at it while a poke
        waits too long, and tell of a hold that goes on."""
        with tempfile.TemporaryFile("w+") as dump:
            while not stop.wait(self.interval):
                still_held = self._sample(loop, dump, call_soon)
                if still_held is not None:
                    self.report_still_held(*still_held)

    def _sample(
        self, loop: LoopThread, dump: IO[str], call_soon: Callable[..., object]
    ) -> tuple[float, Stall] | None:
        """One sample: poke the loop or look at it; the hold to tell of now, if any. The
        looking (the task tree, a stack dump, the connections) is done outside the lock,
        which the loop takes to answer a poke."""
        io = self._io
        with self._lock:
            if not self._pokes.waiting and io is not None and io.waiting:
                return None  # idle: nothing to poke
            now = perf_counter()
            verdict = self._pokes.sample(now)
            if verdict.poke:
                call_soon(self._answered)
            wait = self._pokes.sent_at
        if not verdict.look:
            return None
        task = running_task(loop.root)
        with self._lock:
            if self._pokes.sent_at != wait:
                return None  # answered meanwhile
            first_seen = self._pokes.seen(task)
            held = self._pokes.still_held(now)
        if not (first_seen or held is not None):
            return None
        frames = loop.frames(dump)
        if first_seen:
            stall = stall_of(task, describe_frames(frames), self.stats)
            with self._lock:
                if self._pokes.sent_at == wait:
                    self._stalls.append(stall)
        if held is None:
            return None
        return held, stall_of(task, describe_frames(frames, limit=None), self.stats)

    def _answered(self) -> None:
        """In the loop: the poke ran; report the wait if it was a hold."""
        with self._lock:
            holders = self._pokes.holders
            held = self._pokes.answered(perf_counter())
            stalls, self._stalls = self._stalls, []
        if held is not None:
            self.report(held, stalls or [Stall()], holders)
        cpu, now = time.thread_time(), perf_counter()
        used, self._cpu_at = (cpu - self._cpu_at[0], now - self._cpu_at[1]), (cpu, now)
        if self._running:
            self._use_io_flag(wants_io_flag(self._io is not None, *used))

    def _use_io_flag(self, wanted: bool) -> None:
        """In the loop: put the idle instrument in, or take it out."""
        if wanted and self._io is None:
            self._io = IoWaitFlag()
            trio.lowlevel.add_instrument(self._io)
        elif not wanted and self._io is not None:
            trio.lowlevel.remove_instrument(self._io)
            self._io = None

    def report(self, seconds: float, stalls: Sequence[Stall], holders: int = 1) -> None:
        """Count and log one wait of ``seconds`` that ``holders`` tasks made (the first
        ones in ``stalls``)."""
        first = stalls[0]
        self.stats.blocked[first.route] += 1
        self.stats.blocked_seconds.observe(seconds)
        tasks = ", ".join(stall.task for stall in stalls)
        self.stats.recent_blocked.append(
            BlockedStep(
                time.time(), seconds, tasks, first.handler, first.route, first.path, first.where
            )
        )
        logger.warning(
            "loop blocked for %.0f ms by %s",
            seconds * 1000,
            describe_holders(stalls, holders),
            extra={**_fields(seconds, first), "tasks": holders},
        )

    def report_still_held(self, seconds: float, stall: Stall) -> None:
        """Log, from the watcher thread, a hold of ``seconds`` so far that still goes on."""
        logger.warning(
            "loop held for %.0f ms so far by %s",
            seconds * 1000,
            stall.describe(),
            extra={**_fields(seconds, stall), "still_held": True},
        )


def _fields(seconds: float, stall: Stall) -> dict[str, object]:
    """A hold's fields for ``--log-format json``, one per key."""
    return {
        "blocked_ms": round(seconds * 1000, 1),
        "task": stall.task,
        "handler": stall.handler,
        "route": stall.route,
        "path": stall.path,
        "where": stall.where,
    }


@asynccontextmanager
async def watching(threshold: float | None, stats: ServerStats) -> AsyncIterator[None]:
    """Run a ``BlockWatchdog`` for the body's duration (none if ``threshold`` is None)."""
    if threshold is None:
        yield
        return
    async with trio.open_nursery() as nursery:
        nursery.start_soon(BlockWatchdog(threshold, stats).run, name="watchdog")
        try:
            yield
        finally:
            nursery.cancel_scope.cancel()
