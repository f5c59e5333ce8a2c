"""A server under valgrind's callgrind with counting off until asked: ``counting(command,
port)`` starts it and waits until it listens; ``on()``/``off()`` switch the counting around
the work measured; once the block ends (the server stopped with SIGINT), ``total`` holds the
instructions counted. For figures the machine's load cannot move (``asgi_instructions.py``).
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import attrs
from wsclient import (
    BenchError,
    abort,
    client_frame,
    open_websocket,
    send_and_expect,
    server_frame,
)


def free_port() -> int:
    """A TCP port free on the loopback right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@attrs.define
class Counting:
    """The server being counted: switch counting ``on`` and ``off``; ``total`` at the end."""

    pid: int
    total: int = 0

    def on(self) -> None:
        self._switch("on")

    def off(self) -> None:
        self._switch("off")

    def _switch(self, switch: str) -> None:
        subprocess.run(
            ["callgrind_control", "-i", switch, str(self.pid)],
            check=True,
            capture_output=True,
            timeout=60,
        )


@contextmanager
def counting(
    command: list[str], port: int, *, cwd: Path, env: Mapping[str, str] | None = None
) -> Iterator[Counting]:
    """Run ``command`` (a server listening on ``port``) under callgrind for the block."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise BenchError("valgrind (with callgrind_control) is not installed")
    with tempfile.TemporaryDirectory(prefix="corral-callgrind-") as scratch:
        valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                    f"--callgrind-out-file={Path(scratch) / 'callgrind.out'}"]  # fmt: skip
        server = subprocess.Popen(
            [*valgrind, *command], cwd=cwd, env=env, stderr=subprocess.DEVNULL
        )
        result = Counting(server.pid)
        try:
            _wait_for_port(port, server)
            yield result
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=120)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        text = "".join(path.read_text() for path in Path(scratch).glob("callgrind.out*"))
    totals = [int(found) for found in re.findall(r"^(?:summary|totals): (\d+)", text, re.M)]
    if not totals:
        raise BenchError("callgrind wrote no totals")
    result.total = max(totals)


def _wait_for_port(port: int, server: subprocess.Popen[bytes], seconds: float = 120.0) -> None:
    """Wait until ``server`` (slow to start under valgrind) listens on ``port``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise BenchError(f"the server exited with {server.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise BenchError(f"the server did not listen on {port} within {seconds:.0f} s")


ECHO_PAYLOAD = b"corral echo instructions"
ECHO_WARM_UP = 200
"""Round trips per connection before counting starts (first-use paths, caches warmed)."""


def count_echoes(server: Counting, port: int, connections: int, round_trips: int) -> None:
    """Echo ``round_trips`` times on each of ``connections`` new connections to ``port``,
    counting only those (after a warm-up): closed loop, one message in flight per connection,
    all sent before any reply is read."""
    sockets: list[socket.socket] = []
    try:
        sockets = [open_websocket(port, timeout=300) for _ in range(connections)]
        frame, reply = client_frame(ECHO_PAYLOAD), server_frame(ECHO_PAYLOAD)
        for _ in range(ECHO_WARM_UP):
            send_and_expect(sockets, frame, reply)
        server.on()
        for _ in range(round_trips):
            send_and_expect(sockets, frame, reply)
        server.off()
    finally:
        for sock in sockets:
            abort(sock)
