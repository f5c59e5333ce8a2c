"""What mounting an ASGI app costs corral's WebSocket paths, in server instructions counted
by valgrind's callgrind (``callgrind.py``): figures the machine's load cannot move.

Each server runs as ``corral serve`` runs it (its collector tuning included). ``echo``: corral's
echo example (``examples.echo:app``), and the same with ``asgi_app.api`` mounted
(``asgi_app:echo_app``); after a warm-up, counting is on for exactly ``--round-trips`` round
trips on each of ``--connections`` connections. ``fanout``: ``fanout_server.py``'s corral app
(``asgi_app:fanout_app``, ``asgi_app:fanout_asgi_app``); ``--connections`` subscribers, one
publisher, counting on for ``--messages`` chat-sized texts that every subscriber reads in full. Each
figure is printed for both servers, then the ratio (with / without; within 3% is the target).
The watchdog and the memory trim are off: they follow the wall clock, which valgrind stretches.

Run: ``python bench/asgi_instructions.py [echo] [--connections 1] [--round-trips 2000]`` or
``python bench/asgi_instructions.py fanout [--connections 200] [--messages 500]``.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from callgrind import Counting, count_echoes, counting, free_port  # noqa: E402
from wsclient import (  # noqa: E402
    BenchError,
    abort,
    client_frame,
    connect,
    handshake,
    open_websocket,
    read_upgrade,
    server_frame,
)

BENCH = Path(__file__).resolve().parent
TARGET = 1.03
"""Issue 25: with the ASGI app mounted, at most 3% more instructions."""
WARM_UP = 200
"""Fan-out messages before counting starts (echo's warm-up is ``callgrind.count_echoes``')."""
APPS = {
    "echo": {"without": "examples.echo:app", "with ASGI": "asgi_app:echo_app"},
    "fanout": {"without": "asgi_app:fanout_app", "with ASGI": "asgi_app:fanout_asgi_app"},
}
MESSAGE = b'{"type": "said", "nick": "bench", "text": "' + b"x" * 40 + b'"}'
_ENV = {**os.environ, "PYTHONPATH": f"{BENCH.parent}{os.pathsep}{BENCH}"}


@contextmanager
def _served(app: str) -> Iterator[tuple[int, Counting]]:
    """``corral serve app`` under callgrind: its port, and its counting switch."""
    port = free_port()
    command = [sys.executable, "-m", "server.run.cli", "serve", app, "--port", str(port),
               "--log-level", "warning", "--no-block-watchdog", "--no-memory-trim",
               "--max-connections", "20000"]  # fmt: skip
    with counting(command, port, cwd=BENCH, env=_ENV) as server:
        yield port, server


def count_echo(app: str, connections: int, round_trips: int) -> int:
    """Instructions ``app``'s server ran for ``round_trips`` echoes on each connection."""
    with _served(app) as (port, server):
        count_echoes(server, port, connections, round_trips)
    return server.total


def count_fanout(app: str, connections: int, messages: int) -> int:
    """Instructions ``app``'s server ran to deliver ``messages`` to every one of
    ``connections`` subscribers."""
    sockets: list[socket.socket] = []
    with _served(app) as (port, server):
        try:
            subscribers = [_subscribe(port) for _ in range(connections)]
            sockets = [*subscribers, publisher := open_websocket(port, "/pub", timeout=300)]
            _publish(publisher, subscribers, min(WARM_UP, messages))
            server.on()
            _publish(publisher, subscribers, messages)
            server.off()
        finally:
            for sock in sockets:
                abort(sock)
    return server.total


def _subscribe(port: int) -> socket.socket:
    """A subscriber that has read its ``joined`` frame."""
    sock = connect(port, timeout=300)
    sock.sendall(handshake(port, "/sub"))
    _read_exactly(sock, server_frame(b"joined"), read_upgrade(sock))
    return sock


def _publish(publisher: socket.socket, subscribers: list[socket.socket], messages: int) -> None:
    publisher.sendall(client_frame(MESSAGE) * messages)
    expected = server_frame(MESSAGE) * messages
    for sock in subscribers:
        _read_exactly(sock, expected)


def _read_exactly(sock: socket.socket, expected: bytes, already: bytes = b"") -> None:
    received = bytearray(already)
    while len(received) < len(expected):
        chunk = sock.recv(65536)
        if not chunk:
            raise BenchError("a subscriber was closed")
        received += chunk
    if bytes(received) != expected:
        raise BenchError(f"unexpected frames: {bytes(received[:80])!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="echo", choices=("echo", "fanout"))
    parser.add_argument("--connections", type=int, help="default: echo 1, fanout 200")
    parser.add_argument("--round-trips", type=int, default=2000, help="echo")
    parser.add_argument("--messages", type=int, default=500, help="fanout")
    parser.add_argument("--quick", action="store_true", help="a few of each (smoke test)")
    options = parser.parse_args(argv)
    connections = options.connections or (1 if options.mode == "echo" else 200)
    if options.quick:
        connections, options.round_trips, options.messages = min(connections, 10), 50, 10
    per: dict[str, float] = {}
    for side in ("without", "with ASGI"):
        if options.mode == "echo":
            units = connections * options.round_trips
            total = count_echo(APPS["echo"][side], connections, options.round_trips)
            what = f"{connections} connection(s) x {options.round_trips} round trips"
        else:
            units = connections * options.messages
            total = count_fanout(APPS["fanout"][side], connections, options.messages)
            what = f"{connections} subscribers x {options.messages} messages"
        per[side] = total / units
        print(f"{options.mode} {side}: {what}: {per[side]:,.0f} instructions each", flush=True)
    ratio = per["with ASGI"] / per["without"]
    verdict = "MET" if ratio <= TARGET else "MISSED"
    print(
        f"with/without ASGI, {options.mode} instructions: {ratio:.4f}x {verdict} (target <= 1.03x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
