"""``corral serve --workers N``: N worker processes sharing one port, under a parent.

Each worker is a whole ``corral serve`` (its own node, supervisor and drain) listening with
SO_REUSEPORT, so the kernel spreads new connections over them. The parent only watches:

- a worker that exits without being asked is started again after a backoff (0.1 s doubling
  to 5 s; back to 0.1 s once a worker has lived 10 s), and each restart is logged;
- the first SIGINT/SIGTERM is passed on as SIGTERM to every worker, each drains as a single
  server does, and the parent exits 0 once all have (1 if one did not exit 0);
- a second signal is passed on (each worker exits at once, status 130) and the parent exits
  130 too;
- SIGHUP (``corral upgrade PID``) is passed on to every worker, each upgrades its code
  (``upgrade``) and writes its report to a file the parent reads and logs, worker by worker.

Workers run in their own process group, so a terminal's Ctrl-C reaches the parent only and
each worker sees exactly one signal per signal the parent gets. A worker whose parent dies
without a word (SIGKILL) notices within a second and drains (``drain_when_orphaned``). The
restart arithmetic is ``Backoff``, a plain class; the trio loop around it stays thin.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import attrs
import trio

from ..ops.upgrade_request import UPGRADES_ENV
from .stop_signals import EXIT_AT_ONCE
from .upgrade import read_report

logger = logging.getLogger("corral.workers")

WORKER_INDEX_ENV = "CORRAL_WORKER_INDEX"
"""Tells a worker its index (0 to N-1), which it writes on every log line."""
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
REPORT_WAIT = 60.0
"""Seconds the parent waits for each worker's upgrade report before saying it has none."""


@attrs.define
class Backoff:
    """How long to wait before restarting a worker that exited on its own."""

    first: float = 0.1
    most: float = 5.0
    stable_after: float = 10.0
    """A worker that lived this long before exiting restarts after ``first`` again."""
    current: float = attrs.field(default=0.0, init=False)

    def after_exit(self, lived: float) -> float:
        """The delay before the next start, given how long the last one lived."""
        if lived >= self.stable_after or self.current == 0.0:
            self.current = self.first
        else:
            self.current = min(self.current * 2, self.most)
        return self.current


async def drain_when_orphaned(shutdown: Callable[[], Awaitable[None]]) -> None:
    """In a worker: when the parent process is gone, run ``shutdown`` (checked every second:
    an orphan is adopted by another process, so its parent pid changes)."""
    parent = os.getppid()
    while os.getppid() == parent:
        await trio.sleep(1.0)
    logger.warning("the parent (pid %d) is gone: draining", parent)
    await shutdown()


def worker_index() -> int | None:
    """In a worker of ``--workers``: its index, from the parent; None elsewhere."""
    index = os.environ.get(WORKER_INDEX_ENV)
    return int(index) if index is not None and index.isdigit() else None


def upgrade_report_path() -> Path | None:
    """In a worker of ``--workers``: the file its upgrade reports go to; None elsewhere."""
    directory, index = os.environ.get(UPGRADES_ENV), worker_index()
    return None if directory is None or index is None else Path(directory) / f"{index}.json"


def worker_command(argv: Sequence[str]) -> list[str]:
    """The command line of one worker: ours without ``--workers``, plus ``--worker``."""
    command: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            command.append(arg)
    return [sys.executable, "-m", "server.run.cli", *command, "--worker"]


class Workers:
    """Runs ``count`` copies of ``command`` until a signal (see the module docstring)."""

    def __init__(self, command: list[str], count: int, scratch: str | None = None) -> None:
        if count < 1:
            raise ValueError(f"--workers must be >= 1, not {count}")
        self.command = command
        self.count = count
        self.scratch = scratch
        """A directory the workers share (their metrics), removed on every way out."""
        self.stopping = False
        self.failed = False
        self._processes: dict[int, trio.Process] = {}
        self._stop = trio.Event()
        self._reports = Path(tempfile.mkdtemp(prefix="corral-upgrades-"))

    async def run(self) -> int:
        """Start the workers, keep them running, and return the parent's exit status."""
        try:
            return await self._run()
        finally:
            self._remove_scratch()

    async def _run(self) -> int:
        with trio.open_signal_receiver(*STOP_SIGNALS, signal.SIGHUP) as signals:
            async with trio.open_nursery() as nursery:
                watching = trio.CancelScope()

                async def watch() -> None:
                    with watching:
                        async for signum in signals:
                            if signum == signal.SIGHUP:
                                nursery.start_soon(self._upgrade)
                            else:
                                self._signalled(signal.Signals(signum))

                nursery.start_soon(watch)
                async with trio.open_nursery() as keepers:
                    for index in range(self.count):
                        keepers.start_soon(self._keep, index)
                watching.cancel()  # every keeper returned: all workers have exited
        return 1 if self.failed else 0

    def _signalled(self, signum: signal.Signals) -> None:
        if self.stopping:
            logger.warning("second %s: workers exit at once", signum.name)
            self._forward(signal.SIGTERM)
            self._remove_scratch()  # os._exit runs no finally
            os._exit(EXIT_AT_ONCE)
        self.stopping = True
        self._stop.set()
        logger.info("%s: draining %d workers", signum.name, len(self._processes))
        self._forward(signal.SIGTERM)

    async def _upgrade(self) -> None:
        """SIGHUP: pass it to every worker, then log each one's report as it comes."""
        if self.stopping:
            return
        asked = {
            index: (process, read_report(self._report_of(index))[0])
            for index, process in self._processes.items()
        }
        logger.info("SIGHUP: upgrading %d workers", len(asked))
        self._forward(signal.SIGHUP)
        results = await _collect_reports(
            {index: (self._report_of(index), count) for index, (_, count) in asked.items()}
        )
        for index, (ok, line) in sorted(results.items()):
            pid = asked[index][0].pid
            (logger.info if ok else logger.error)("worker %d (pid %d): %s", index, pid, line)
        done = sum(ok for ok, _ in results.values())
        logger.info("upgrade: %d of %d workers upgraded", done, len(asked))

    def _report_of(self, index: int) -> Path:
        return self._reports / f"{index}.json"

    def _forward(self, signum: signal.Signals) -> None:
        for process in self._processes.values():
            if process.returncode is None:
                process.send_signal(signum)

    async def _keep(self, index: int) -> None:
        backoff = Backoff()
        while not self.stopping:
            env = {**os.environ, WORKER_INDEX_ENV: str(index), UPGRADES_ENV: str(self._reports)}
            process = await trio.lowlevel.open_process(self.command, process_group=0, env=env)
            self._processes[index] = process
            started = trio.current_time()
            logger.info("worker %d started (pid %d)", index, process.pid)
            try:
                status = await process.wait()
            finally:
                if process.returncode is None:  # cancelled: do not leave it behind
                    process.kill()
                    with trio.CancelScope(shield=True):
                        await process.wait()
                del self._processes[index]
            if self.stopping:
                logger.info("worker %d (pid %d) exited with %d", index, process.pid, status)
                self.failed = self.failed or status != 0
                return
            delay = backoff.after_exit(trio.current_time() - started)
            logger.error(
                "worker %d (pid %d) exited with %d: restarting in %.1f s",
                index,
                process.pid,
                status,
                delay,
            )
            with trio.move_on_after(delay):
                await self._stop.wait()

    def _remove_scratch(self) -> None:
        shutil.rmtree(self._reports, ignore_errors=True)
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)


async def _collect_reports(waiting: dict[int, tuple[Path, int]]) -> dict[int, tuple[bool, str]]:
    """Each worker's next report (``waiting``: its file and the count it had), polled until
    it comes or ``REPORT_WAIT`` passes."""
    results: dict[int, tuple[bool, str]] = {}
    with trio.move_on_after(REPORT_WAIT):
        while len(results) < len(waiting):
            for index, (path, before) in waiting.items():
                count, ok, line = read_report(path)
                if index not in results and count > before:
                    results[index] = (ok, line)
            await trio.sleep(0.05)
    for index in waiting:
        results.setdefault(index, (False, f"no upgrade report within {REPORT_WAIT:g} s"))
    return results
