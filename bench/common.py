"""What the echo benchmarks share: the two echo servers as subprocesses, and a raw client.

The servers under test are corral's echo example (``examples.echo:app``) and the bare
trio-websocket echo (``bench/bare_echo.py``). Each runs in its own process, started through
this file (``python bench/common.py corral|bare --port N``), which first raises the process's
open-files limit and installs a SIGUSR1 handler that runs ``gc.collect()`` and answers
``gc\\n`` on stdout, so that a memory reading is taken after a collection.

The client side is plain sockets, no trio and no wsproto: a handshake sent as bytes, one
pre-encoded masked frame sent over and over, replies checked byte for byte. It costs a few
microseconds per message, so the server, not the load generator, is what gets measured.

Connections are closed with an RST (SO_LINGER 0): thousands of runs' worth of TIME_WAIT
sockets would otherwise use up the loopback's ephemeral ports.
"""

from __future__ import annotations

import argparse
import base64
import gc
import os
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import psutil

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
VARIANTS = ("corral", "bare")
"""corral's echo example, and the bare trio-websocket echo it is compared with."""

_KEY = base64.b64encode(b"corral-bench-key").decode()  # any 16 bytes will do
_MASK = b"\x37\xfa\x21\x3d"
_LINGER_RESET = struct.pack("ii", 1, 0)


class BenchError(RuntimeError):
    """The benchmark could not run as intended (a server died, a reply was wrong...)."""


# ---- file descriptors -----------------------------------------------------------------


def raise_nofile(wanted: int) -> int:
    """Raise this process's RLIMIT_NOFILE to at least ``wanted`` (the hard limit too, as
    root); return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, PermissionError):
            wanted = hard  # not root: the hard limit is as far as we may go
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted


# ---- the servers ----------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on the loopback right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class ServerProcess:
    """One echo server in a subprocess; ``start``/``stop`` or use ``run_server``."""

    def __init__(self, variant: str, *, nofile: int = 4096, max_connections: int = 10_000):
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
        self.variant = variant
        self.port = free_port()
        self._command = [
            sys.executable,
            str(Path(__file__).resolve()),
            variant,
            "--port",
            str(self.port),
            "--nofile",
            str(nofile),
            "--max-connections",
            str(max_connections),
        ]
        self._popen: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self.process: psutil.Process | None = None

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until it accepts TCP connections."""
        # stderr to a file, not a pipe: a server logging more than a pipe holds would block.
        self._stderr = tempfile.TemporaryFile()
        self._popen = subprocess.Popen(
            self._command, cwd=ROOT, stdout=subprocess.PIPE, stderr=self._stderr
        )
        self.process = psutil.Process(self._popen.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if self._listening():
                return
            time.sleep(0.05)
        self.stop()
        raise BenchError(f"{self.variant} server not listening on {self.port} after {timeout} s")

    def _listening(self) -> bool:
        """Whether the server has its listening socket (asked of the kernel: a probing
        connection would linger in the server and skew its descriptor count)."""
        assert self.process is not None
        return any(
            c.status == psutil.CONN_LISTEN and c.laddr.port == self.port
            for c in self.process.net_connections(kind="tcp")
        )

    def stop(self) -> None:
        """Stop the server (SIGKILL after 5 s of SIGTERM)."""
        if self._popen is not None and self._popen.poll() is None:
            self._popen.terminate()
            try:
                self._popen.wait(5.0)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait()
        if self._popen is not None and self._popen.stdout is not None:
            self._popen.stdout.close()
        if self._stderr is not None:
            self._stderr.close()

    def stderr_text(self) -> str:
        """What the server has written to stderr so far."""
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def _check_alive(self) -> None:
        assert self._popen is not None
        if self._popen.poll() is not None:
            raise BenchError(
                f"{self.variant} server exited ({self._popen.returncode}):\n{self.stderr_text()}"
            )

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the server has used so far."""
        assert self.process is not None
        times = self.process.cpu_times()
        return float(times.user + times.system)

    def rss(self) -> int:
        """The server's resident set size, in bytes."""
        self._check_alive()
        assert self.process is not None
        return int(self.process.memory_info().rss)

    def open_files(self) -> int:
        """How many file descriptors the server holds (sockets included)."""
        self._check_alive()
        assert self.process is not None
        return int(self.process.num_fds())

    def wait_open_files(self, at_most: int, timeout: float = 30.0) -> None:
        """Wait until the server holds at most ``at_most`` descriptors (closed connections)."""
        deadline = time.monotonic() + timeout
        while self.open_files() > at_most:
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{self.variant} server still holds {self.open_files()} descriptors "
                    f"{timeout:g} s after its clients left (expected at most {at_most})"
                )
            time.sleep(0.05)

    def wait_idle(self, timeout: float = 60.0, interval: float = 0.25) -> None:
        """Wait until the server uses under 5% of a core: it has nothing left to finish."""
        deadline = time.monotonic() + timeout
        before = self.cpu_seconds()
        while time.monotonic() < deadline:
            time.sleep(interval)
            now = self.cpu_seconds()
            if now - before < 0.05 * interval:
                return
            before = now
        raise BenchError(f"{self.variant} server still busy {timeout:g} s after its load ended")

    def collect_garbage(self, timeout: float = 10.0) -> None:
        """Make the server run ``gc.collect()`` and wait until it has."""
        assert self._popen is not None and self._popen.stdout is not None
        self._check_alive()
        os.kill(self._popen.pid, signal.SIGUSR1)
        ready, _, _ = select.select([self._popen.stdout], [], [], timeout)
        if not ready or self._popen.stdout.readline() != b"gc\n":
            raise BenchError(f"{self.variant} server did not answer a gc request")


@contextmanager
def run_server(variant: str, **kwargs: int) -> Iterator[ServerProcess]:
    """A started echo server, stopped on the way out."""
    server = ServerProcess(variant, **kwargs)
    try:
        server.start()
        yield server
    finally:
        server.stop()


# ---- the raw client -------------------------------------------------------------------


def handshake(port: int, path: str = "/") -> bytes:
    """The bytes of a WebSocket upgrade request (RFC 6455 §4.1)."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def client_frame(payload: bytes) -> bytes:
    """One masked binary client frame (payload < 126 bytes) carrying ``payload``."""
    if len(payload) > 125:
        raise ValueError("client_frame builds short frames only (payload <= 125 bytes)")
    masked = bytes(b ^ _MASK[i % 4] for i, b in enumerate(payload))
    return bytes([0x82, 0x80 | len(payload)]) + _MASK + masked


PING = bytes([0x89, 0x80]) + _MASK
"""A masked client ping with no payload."""
PONG = bytes([0x8A, 0x00])
"""The server's answer to ``PING``."""


def server_frame(payload: bytes) -> bytes:
    """The unmasked binary server frame an echo of ``payload`` arrives as."""
    if len(payload) > 125:
        raise ValueError("server_frame builds short frames only (payload <= 125 bytes)")
    return bytes([0x82, len(payload)]) + payload


def open_websocket(port: int, timeout: float = 10.0) -> socket.socket:
    """A connected, upgraded, blocking socket (TCP_NODELAY); BenchError unless 101."""
    sock = socket.create_connection((HOST, port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(handshake(port))
        read_upgrade(sock)
    except BaseException:
        abort(sock)
        raise
    return sock


def read_upgrade(sock: socket.socket) -> None:
    """Read the server's answer to the handshake; BenchError unless it is a bare 101.

    The echo servers send nothing after the 101 until the client does, so any byte past the
    head is an error here, not a frame to keep.
    """
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise BenchError(f"connection closed during the handshake after {head!r}")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise BenchError(f"upgrade refused: {head.splitlines()[0]!r}")
    extra = head.partition(b"\r\n\r\n")[2]
    if extra:
        raise BenchError(f"unexpected bytes after the 101: {extra!r}")


def send_and_expect(sockets: Sequence[socket.socket], frame: bytes, reply: bytes) -> None:
    """Send ``frame`` on every (blocking) socket, then check each answers exactly ``reply``.

    All frames go out before any answer is read, so the server works on them together.
    """
    for sock in sockets:
        sock.sendall(frame)
    for sock in sockets:
        got = b""
        while len(got) < len(reply):
            chunk = sock.recv(len(reply) - len(got))
            if not chunk:
                raise BenchError("the server closed a connection instead of answering")
            got += chunk
        if got != reply:
            raise BenchError(f"wrong answer: expected {reply!r}, got {got!r}")


def abort(sock: socket.socket) -> None:
    """Close with an RST: no TIME_WAIT left behind on the client's port."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    except OSError:
        pass
    sock.close()


# ---- the server side of this file -----------------------------------------------------


def _answer_gc(signum: int, frame: object) -> None:
    gc.collect()
    os.write(sys.stdout.fileno(), b"gc\n")


def _serve(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description="run an echo server for the benchmarks")
    parser.add_argument("variant", choices=VARIANTS)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--nofile", type=int, default=4096, help="RLIMIT_NOFILE to ask for")
    parser.add_argument("--max-connections", type=int, default=10_000, help="corral's limit")
    args = parser.parse_args(argv)
    raise_nofile(args.nofile)
    signal.signal(signal.SIGUSR1, _answer_gc)
    sys.path.insert(0, str(ROOT))
    if args.variant == "corral":
        from server import cli

        return cli.main(
            [
                "serve",
                "examples.echo:app",
                "--port",
                str(args.port),
                "--log-level",
                "warning",  # no log line per connection: logging is not what we measure
                "--max-connections",
                str(args.max_connections),
            ]
        )
    sys.path.insert(0, str(ROOT / "bench"))
    import bare_echo

    bare_echo.main(["--port", str(args.port)])
    return 0


if __name__ == "__main__":
    sys.exit(_serve(sys.argv[1:]))
