"""What another thread sees of the trio loop while a task holds it: which task is running,
the loop thread's stack, the connection that task runs.

The watchdog's thread looks while the loop is held, and so does a signal handler interrupting
it (``stop_signals``); each look is a copy made in one C call (trio's task tree), a lookup
(the actor a task runs, from the task's context; its connection) or a ``faulthandler`` dump,
so it is safe while the loop thread runs on.
"""

from __future__ import annotations

import faulthandler
import itertools
import os
import re
from collections.abc import Sequence
from typing import IO

import attrs
import trio

from actors.actor import actor_of_task

from ..engine.connection import connection_of
from .stats import ServerStats

STACK_FRAMES = 3
"""Innermost frames of the blocking stack given in the log line."""

Frame = tuple[str, int, str]
"""(file, line, function) of one frame of a stack."""


@attrs.frozen
class Stall:
    """What the watcher thread saw while a step held the loop: the task ("-" if the loop was
    in trio itself), the handler, route and path of the connection it runs, and where."""

    task: str = "-"
    handler: str = "-"
    route: str = ""
    path: str = "-"
    where: str = "-"

    def describe(self) -> str:
        """The task, its connection and where it was, as a log line gives them."""
        return (
            f"{self.task} (handler {self.handler}, route {self.route or '-'}, path {self.path})"
            f" at {self.where}"
        )


def stall_of(task: trio.lowlevel.Task | None, where: str, stats: ServerStats) -> Stall:
    """The stall of ``task`` (None: trio itself), blocked at ``where``, with the connection
    it runs; safe from another thread while the loop is held."""
    if task is None:  # in trio itself, not in a task's code
        return Stall(where=where)
    actor = actor_of_task(task)  # O(1), however many connections are open
    connection = connection_of(actor) if actor is not None else None
    route = stats.open.get(connection) if connection is not None else None
    if connection is None or route is None:
        return Stall(task.name, where=where)
    handler = type(connection.handler).__qualname__
    return Stall(task.name, handler, route, connection.request.path, where)


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

    def frames(self, dump: IO[str]) -> list[Frame]:
        """Its stack now, innermost first, from a ``faulthandler`` dump into ``dump``."""
        dump.seek(0)
        dump.truncate()
        faulthandler.dump_traceback(dump, all_threads=True)
        dump.seek(0)
        return loop_thread_frames(dump.read(), self.ident)


_THREAD = re.compile(r"^(?:Current thread|Thread) (0x[0-9a-fA-F]+)")
_FRAME = re.compile(r'^  File "(.*)", line (\d+) in (.*)$')


def loop_thread_frames(dump: str, thread: int) -> list[Frame]:
    """(file, line, function) of ``thread``'s frames in a ``faulthandler`` dump, innermost
    first; empty if the dump has no such thread."""
    frames: list[Frame] = []
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


def describe_frames(frames: Sequence[Frame], limit: int | None = STACK_FRAMES) -> str:
    """The task's own frames (past trio's innermost ones, up to trio's scheduler that runs the
    task), the innermost ``limit`` of them (None: all), as ``file:line in function``,
    innermost first ("-" if there are none)."""
    own = itertools.dropwhile(_in_trio, frames)
    shown = list(itertools.islice(itertools.takewhile(lambda f: not _in_trio(f), own), limit))
    described = [f"{os.path.basename(path)}:{line} in {function}" for path, line, function in shown]
    return " <- ".join(described) or "-"


def _in_trio(frame: Frame) -> bool:
    return frame[0].startswith(_TRIO_DIR)


_TRIO_DIR = os.path.dirname(trio.__file__) + os.sep
