"""Server instructions per fan-out delivery, counted by valgrind's callgrind: the fan-out's
per-message path as a figure the machine's load cannot move (``echo_instructions.py``'s
method), for corral's fan-out server with and without an ASGI app mounted.

``fanout_server.py corral`` (or ``corral-asgi``: the same with ``asgi_app.api`` mounted) runs
under callgrind with counting off; ``--connections`` subscribers join, one publisher sends
``--messages`` chat-sized texts that every subscriber reads in full (a warm-up first), and
counting is on for exactly those. ``--compare`` counts both servers and prints the ratio.

Run: ``python bench/fanout_instructions.py [--variant corral|corral-asgi] [--connections 200]
[--messages 100] [--compare] [--quick]``.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from echo_instructions import control, counted, free_port, wait_for_port  # noqa: E402
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
WARM_UP = 20
"""Messages delivered before counting starts."""
MESSAGE = b'{"type": "said", "nick": "bench", "text": "' + b"x" * 40 + b'"}'


def _subscribe(port: int) -> socket.socket:
    """A subscriber that has read its ``joined`` frame."""
    sock = connect(port, timeout=300)
    sock.sendall(handshake(port, "/sub"))
    _read_exactly(sock, server_frame(b"joined"), read_upgrade(sock))
    return sock


def _read_exactly(sock: socket.socket, expected: bytes, already: bytes = b"") -> None:
    received = bytearray(already)
    while len(received) < len(expected):
        chunk = sock.recv(65536)
        if not chunk:
            raise BenchError("a subscriber was closed")
        received += chunk
    if bytes(received) != expected:
        raise BenchError(f"unexpected frames: {bytes(received[:80])!r}")


def _publish(publisher: socket.socket, subscribers: list[socket.socket], messages: int) -> None:
    publisher.sendall(client_frame(MESSAGE) * messages)
    expected = server_frame(MESSAGE) * messages
    for sock in subscribers:
        _read_exactly(sock, expected)


def count(variant: str, connections: int, messages: int) -> int:
    """Instructions ``variant``'s server ran to deliver ``messages`` to ``connections``."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise BenchError("valgrind (with callgrind_control) is not installed")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="corral-callgrind-") as scratch:
        command = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={Path(scratch) / 'callgrind.out'}",
            sys.executable,
            str(BENCH / "fanout_server.py"),
            variant,
            "--port",
            str(port),
            "--max-connections",
            str(connections + 64),
        ]
        server = subprocess.Popen(command, cwd=BENCH.parent, stderr=subprocess.DEVNULL)
        sockets: list[socket.socket] = []
        try:
            wait_for_port(port, server)
            subscribers = [_subscribe(port) for _ in range(connections)]
            sockets = [*subscribers, publisher := open_websocket(port, "/pub", timeout=300)]
            _publish(publisher, subscribers, WARM_UP)
            control(server.pid, "on")
            _publish(publisher, subscribers, messages)
            control(server.pid, "off")
        finally:
            for sock in sockets:
                abort(sock)
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=120)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        return counted(Path(scratch))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=("corral", "corral-asgi"), default="corral")
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--compare", action="store_true", help="both variants, and the ratio")
    parser.add_argument("--quick", action="store_true", help="--compare, 10 x 10 (smoke test)")
    options = parser.parse_args(argv)
    if options.quick:
        options.compare, options.connections, options.messages = True, 10, 10
    variants = ("corral", "corral-asgi") if options.compare else (options.variant,)
    deliveries = options.connections * options.messages
    per: dict[str, float] = {}
    for variant in variants:
        per[variant] = count(variant, options.connections, options.messages) / deliveries
        print(
            f"{variant}: {options.connections} subscribers x {options.messages} messages: "
            f"{per[variant]:,.0f} instructions per delivery",
            flush=True,
        )
    if options.compare:
        ratio = per["corral-asgi"] / per["corral"]
        print(f"with/without ASGI, instructions per delivery: {ratio:.4f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
