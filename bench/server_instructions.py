"""Server instructions per echo round trip and per connection opened, counted by valgrind's
callgrind: figures that the machine's load cannot move, for A/B runs on a shared machine.

The echo example runs as ``corral serve`` runs it, under callgrind with counting off; counting
is switched on (``callgrind_control -i on``) only around the work measured, then off:
``echo``, after the connections are open and warmed up, exactly ``--round-trips`` round trips
on each of ``--connections`` connections (closed loop, one message in flight per connection,
all sent before any reply is read); ``opens``, ``--connections`` connections opened and
upgraded (after as many opened and closed to warm up); ``closes``, ``--connections``
connections closed at once by their clients (a close frame each, until the server's FIN).
What is counted is the server's own work, kernel entry points excluded: the Python code, the
interpreter and the C libraries. The watchdog and the memory trim are off: they follow the
wall clock, which valgrind stretches.

Run: ``python bench/server_instructions.py echo [--connections 1] [--round-trips 2000]`` or
``... opens|closes [--connections 500]``; A/B: ``python bench/ab.py --old ../old --new . --runs 2
server_instructions.py echo``.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from callgrind import count_echoes, counting, free_port  # noqa: E402
from wsclient import (  # noqa: E402
    CLOSE,
    abort,
    client_frame,
    open_websocket,
)


def _cli_module(checkout: Path) -> str:
    """The CLI's module in this checkout (it moved into server/run/ with the layout split)."""
    return "server.run.cli" if (checkout / "server" / "run" / "cli.py").exists() else "server.cli"


def count(checkout: Path, mode: str, connections: int, round_trips: int) -> int:
    """Instructions the server ran for ``round_trips`` echoes on each of ``connections``
    (``echo``), to open and upgrade ``connections`` (``opens``), or to close them (``closes``)."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        _cli_module(checkout),
        "serve",
        "examples.echo:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-block-watchdog",  # its thread's pokes follow the wall clock, not the work
        "--no-memory-trim",  # it runs when a burst of closes has settled: a wall-clock rule
    ]
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    sockets: list[socket.socket] = []
    with counting(command, port, cwd=checkout, env=env) as server:
        try:
            if mode == "closes":
                sockets = [open_websocket(port, timeout=120) for _ in range(connections)]
                closing = client_frame(b"\x03\xe8", CLOSE)
                server.on()
                for sock in sockets:  # all at once, then every reply and the server's FIN
                    sock.sendall(closing)
                for sock in sockets:
                    while sock.recv(4096):
                        pass
                server.off()
            elif mode == "opens":
                for sock in [open_websocket(port, timeout=120) for _ in range(connections)]:
                    abort(sock)
                server.on()
                sockets = [open_websocket(port, timeout=120) for _ in range(connections)]
                server.off()
            else:
                count_echoes(server, port, connections, round_trips)
        finally:
            for sock in sockets:
                abort(sock)
    return server.total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="echo", choices=("echo", "opens", "closes"))
    parser.add_argument("--checkout", type=Path, default=Path.cwd(), help="default: here")
    parser.add_argument("--connections", type=int, help="default: echo 1, opens 500")
    parser.add_argument("--round-trips", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="200 round trips (smoke test)")
    options = parser.parse_args(argv)
    if options.quick:
        options.round_trips = 200
    connections = options.connections or (1 if options.mode == "echo" else 500)
    if options.quick and options.mode != "echo":
        connections = 50
    checkout = options.checkout.resolve()
    total = count(checkout, options.mode, connections, options.round_trips)
    print(f"checkout {checkout}")
    if options.mode == "opens":
        print(f"{connections} connections opened: {total:,} instructions")
        print(f"instructions per connection opened: {total / connections:,.0f}")
    elif options.mode == "closes":
        print(f"{connections} connections closed by their clients: {total:,} instructions")
        print(f"instructions per connection closed: {total / connections:,.0f}")
    else:
        trips = options.round_trips
        print(f"{connections} connection(s) x {trips} round trips: {total:,} instructions")
        print(f"instructions per round trip: {total / (connections * options.round_trips):,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
