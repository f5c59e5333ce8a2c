"""A watchdog for blocked loops: a task step that holds the trio loop too long is reported.

Erlang preempts a busy process; trio cannot, so a callback that computes or blocks for a
second freezes every connection. ``BlockWatchdog`` is a trio instrument that times every task
step (``before_task_step``/``after_task_step``, trio's public hooks); a step longer than the
threshold is counted in the server's tally (``corral_loop_blocked``) and logged with the
handler, route and path of the connection it ran for, and where that task waits now (the
innermost frames of its await stack: inside an async callback, the await after the blocking
code). The remedy, in the README: move blocking work off the loop with
``await trio.to_thread.run_sync(fn)``.
"""

from __future__ import annotations

import logging
import os
import time
from time import perf_counter

import trio

from .tally import BlockedStep, Tally

logger = logging.getLogger("corral.server.watchdog")

DEFAULT_THRESHOLD = 0.1
"""Seconds a task step may hold the loop before it is reported (ServerOptions.block_threshold)."""

STACK_FRAMES = 3
"""Innermost frames of the task's await stack given in the log line."""


def is_blocked(elapsed: float, threshold: float) -> bool:
    """Whether a step of ``elapsed`` seconds held the loop too long."""
    return elapsed >= threshold


class BlockWatchdog(trio.abc.Instrument):
    """Times task steps; reports those over ``threshold`` seconds to ``tally`` and the log.

    Install it with ``trio.lowlevel.add_instrument`` (``Server.run`` does, unless
    ``ServerOptions.block_threshold`` is None); it costs two clock reads per task step.
    """

    def __init__(self, threshold: float, tally: Tally) -> None:
        self.threshold = threshold
        self.tally = tally
        self._started = float("inf")  # installed mid-step: that step is not timed

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._started = perf_counter()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        elapsed = perf_counter() - self._started
        if elapsed >= self.threshold:
            self.report(task, elapsed)

    def report(self, task: trio.lowlevel.Task, elapsed: float) -> None:
        """Count and log one blocking step of ``task``."""
        handler, route, path = self._connection_of(task)
        self.tally.blocked[route] += 1
        self.tally.blocked_seconds.observe(elapsed)
        where = describe_stack(task)
        self.tally.recent_blocked.append(
            BlockedStep(time.time(), elapsed, task.name, handler, route, path, where)
        )
        logger.warning(
            "loop blocked for %.0f ms by %s (handler %s, route %s, path %s); waiting now at %s",
            elapsed * 1000,
            task.name,
            handler,
            route or "-",
            path,
            where,
            extra={
                "blocked_ms": round(elapsed * 1000, 1),
                "task": task.name,
                "handler": handler,
                "route": route,
                "path": path,
                "where": where,
            },
        )

    def _connection_of(self, task: trio.lowlevel.Task) -> tuple[str, str, str]:
        """Handler class, route pattern and path of the connection ``task`` runs, if any."""
        for connection, route in self.tally.open.items():
            if task.name == f"actor {connection.actor.address}":
                handler = type(connection.handler).__qualname__
                return handler, route, connection.request.path
        return "-", "", "-"


def describe_stack(task: trio.lowlevel.Task) -> str:
    """The innermost frames of ``task``'s await stack outside trio itself, as ``file:line in
    function``, innermost first ("-" if it has none: it has finished)."""
    frames = [
        (frame, lineno)
        for frame, lineno in task.iter_await_frames()
        if not frame.f_code.co_filename.startswith(_TRIO_DIR)
    ][-STACK_FRAMES:]
    return (
        " <- ".join(
            f"{os.path.basename(frame.f_code.co_filename)}:{lineno} in {frame.f_code.co_name}"
            for frame, lineno in reversed(frames)
        )
        or "-"
    )


_TRIO_DIR = os.path.dirname(trio.__file__) + os.sep
