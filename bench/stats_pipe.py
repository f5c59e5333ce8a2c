"""A server role spoken to over stdio: ``stats`` lines in, one JSON record per line out.

The server side (``emit``, ``answer_stats_requests``) runs inside the process under test; the
driver side (``StatsProcess``) starts it and reads its records. bench/soak.py and
bench/chat_rooms_memory.py each have such a role.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Self

import trio

ROOT = Path(__file__).resolve().parent.parent


# ---- the server side ----------------------------------------------------------------------


def emit(record: dict[str, Any]) -> None:
    """Write one record as a JSON line on stdout."""
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


async def answer_stats_requests(stats: Callable[[], dict[str, Any]]) -> None:
    """Answer each ``stats`` line on stdin with ``{"event": "stats", **stats()}``."""
    requests = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    buffer = b""
    async for chunk in requests:
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip() == b"stats":
                emit({"event": "stats", **stats()})


# ---- the driver side ----------------------------------------------------------------------


class StatsProcess:
    """A server role as a subprocess (run from the repository root), over its stdin/stdout."""

    def __init__(self, process: trio.Process) -> None:
        assert process.stdout is not None and process.stdin is not None
        self.process = process
        self._stdout = process.stdout
        self._stdin = process.stdin
        self._buffer = b""

    @classmethod
    async def start(cls, script: Path, arguments: Sequence[str]) -> Self:
        """``python script server *arguments``."""
        process = await trio.lowlevel.open_process(
            [sys.executable, str(script), "server", *arguments],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        return cls(process)

    async def next_record(self, timeout: float = 30.0) -> dict[str, Any]:
        """The next JSON line; RuntimeError if the process ends first."""
        with trio.fail_after(timeout):
            while b"\n" not in self._buffer:
                chunk = await self._stdout.receive_some()
                if not chunk:
                    raise RuntimeError("the server process ended unexpectedly")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        record: dict[str, Any] = json.loads(line)
        return record

    async def stats(self) -> dict[str, Any]:
        """Ask for a ``stats`` record and return it."""
        await self._stdin.send_all(b"stats\n")
        record = await self.next_record()
        assert record["event"] == "stats", record
        return record

    async def terminate(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then wait; killed past ``timeout`` (returns None then), else its status."""
        self.process.send_signal(signal.SIGTERM)
        with trio.move_on_after(timeout):
            return await self.process.wait()
        await self.kill()
        return None

    async def kill(self) -> None:
        """Kill the process if it still runs, and reap it."""
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
