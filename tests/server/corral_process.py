"""``corral serve`` as a real subprocess: started on a free port with its log in a file, read
by polling that log, killed (workers too) on the way out if it still runs."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import trio

ROOT = Path(__file__).resolve().parents[2]
CORRAL = Path(sys.executable).with_name("corral")
STARTUP = 30.0
"""Generous bound on a start and on every wait for a log line (another process, real time)."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@attrs.define
class CorralProcess:
    """A running ``corral serve``: its process, port and log."""

    process: trio.Process
    port: int
    log_path: Path

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    async def wait_for_log(self, pattern: str, count: int = 1, timeout: float = STARTUP) -> None:
        """Poll the log until ``pattern`` (a regex) appears ``count`` times."""
        with trio.fail_after(timeout):
            while len(re.findall(pattern, self.log)) < count:
                assert self.process.poll() is None, f"corral exited early:\n{self.log}"
                await trio.sleep(0.02)

    async def exit_code(self, timeout: float) -> int:
        with trio.fail_after(timeout):
            return await self.process.wait()

    def worker_pids(self) -> list[int]:
        """The pids of the workers ``--workers`` started so far (from the log)."""
        return [int(pid) for pid in re.findall(r"worker \d+ started \(pid (\d+)\)", self.log)]


@asynccontextmanager
async def corral_serve(
    tmp_path: Path, *args: str, listening: int = 1, script: Path = CORRAL, cwd: Path = ROOT
) -> AsyncIterator[CorralProcess]:
    """Run ``corral serve *args`` on a free port until ``listening`` processes say they
    listen (one per worker); kill it and its workers on the way out if still running.
    ``script`` and ``cwd`` default to this venv's ``corral`` in the source tree."""
    port = free_port()
    log_path = tmp_path / "corral.log"
    with log_path.open("wb") as log_file:
        process = await trio.lowlevel.open_process(
            [str(script), "serve", *args, "--port", str(port)],
            cwd=cwd,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        corral = CorralProcess(process, port, log_path)
        try:
            await corral.wait_for_log(rf"listening on ws://127\.0\.0\.1:{port}", listening)
            yield corral
        finally:
            if process.poll() is None:
                process.kill()
            for pid in corral.worker_pids():
                _kill_quietly(pid)
            with trio.CancelScope(shield=True):
                await process.wait()


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
