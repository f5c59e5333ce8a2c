"""Redis for the cluster tests: the machine's at 127.0.0.1:6379, or one the tests start.

``shared_redis_url()`` answers the URL every test shares (each with its own key prefix, so
parallel runs never collide). ``RedisServer`` is a private ``redis-server`` on a free port,
keeping nothing on disk, that a fault test may stop and start again on the same port.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Sequence

HOST = "127.0.0.1"
MACHINE_PORT = 6379
NO_REDIS = (
    "the cluster tests need Redis: none answers at 127.0.0.1:6379 and redis-server is not "
    "on PATH (scripts/setup-redis installs it; ./dev test runs that script)"
)


def answers(port: int) -> bool:
    """Whether a Redis answers PING on 127.0.0.1:``port``."""
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def listening(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port`` (a Redis that wants a
    password or TLS answers no plain PING)."""
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def unique_prefix() -> str:
    """A key prefix of its own for one test."""
    return f"corral-test:{uuid.uuid4().hex[:12]}"


class RedisServer:
    """A redis-server of our own on a free port, with nothing kept on disk; ``options`` are
    more of its command-line options (``--requirepass``, a TLS port...), which may override
    the plain ``--port``."""

    def __init__(self, port: int | None = None, options: Sequence[str] = ()) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError(NO_REDIS)
        self.port = port or free_port()
        self.options = list(options)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}"

    def start(self) -> None:
        """Start it (again, on the same port) and wait until it answers."""
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                HOST,
                "--save",
                "",
                "--appendonly",
                "no",
                *self.options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not (listening(self.port) if self.options else answers(self.port)):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.01)

    def stop(self) -> None:
        """Kill it (clients see their connections reset)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None
