"""Memory per idle WebSocket connection: corral's echo example against a bare trio-websocket echo.

For each server (a fresh process every time, both in the same run, order alternating):
warm up with a few hundred connections (imports, caches, allocator arenas) and close them,
collect garbage in the server and read its RSS; then open N connections, each upgraded and
echoing one 32-byte message (so every task and buffer of a live connection exists), leave
them idle, collect garbage again and read the RSS again. Memory per connection is the RSS
growth divided by N. Kernel socket buffers are not in a process's RSS, so this is the
server's own cost: tasks, objects, protocol state.

This process is the client: plain sockets, opened in batches (connect and send the upgrade
request, read the 101s, echo once); it raises its own open-files limit and starts the
servers with a raised one. corral closes a connection after 60 s without data (its default
idle timeout): while opening, the connections already open ping every 20 s, and the run
checks that every connection is still open when the RSS is read.

Run: ``python bench/idle_memory.py [--quick] [--connections N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import time
from pathlib import Path

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    HOST,
    PING,
    PONG,
    BenchError,
    ServerProcess,
    abort,
    client_frame,
    handshake,
    raise_nofile,
    read_upgrade,
    run_server,
    send_and_expect,
    server_frame,
)

TARGET_KB = 25.0
"""Issue target: corral's echo server grows by at most this many KB per idle connection."""

IDLE_TIMEOUT = 60.0
"""corral's default idle timeout: every connection must be read before it can pass."""

KEEPALIVE = 20.0
"""Seconds between pings on the connections opened so far, while more are being opened."""
WARMUP_CONNECTIONS = 200
BATCH = 250
"""Connections opened before their 101s are read: well under the listen backlog."""

_PAYLOAD = bytes(range(65, 97))
_FRAME, _REPLY = client_frame(_PAYLOAD), server_frame(_PAYLOAD)


@attrs.frozen
class Reading:
    """One server's memory before and after N idle connections."""

    variant: str
    connections: int
    baseline: int
    loaded: int
    open_seconds: float
    server_fds: int

    @property
    def per_connection(self) -> float:
        """Bytes of RSS growth per connection."""
        return (self.loaded - self.baseline) / self.connections


def open_idle(port: int, count: int) -> list[socket.socket]:
    """``count`` upgraded connections that have each echoed one message; BenchError if not.

    Every KEEPALIVE seconds while opening, the connections already open send a ping (the
    pong comes back at once), so none reaches the idle timeout however slow the opening is.
    """
    sockets: list[socket.socket] = []
    request = handshake(port)
    refreshed = time.monotonic()
    try:
        for first in range(0, count, BATCH):
            fresh = []
            for _ in range(min(BATCH, count - first)):
                sock = socket.create_connection((HOST, port), timeout=30.0)
                sockets.append(sock)
                fresh.append(sock)
                sock.sendall(request)
            for sock in fresh:
                read_upgrade(sock)
            send_and_expect(fresh, _FRAME, _REPLY)
            if time.monotonic() - refreshed > KEEPALIVE:
                send_and_expect(sockets, PING, PONG)
                refreshed = time.monotonic()
    except BaseException:
        close_all(sockets)
        raise
    return sockets


def still_open(sockets: list[socket.socket]) -> int:
    """How many of ``sockets`` the server has not closed (nothing readable, no EOF)."""
    alive = 0
    for sock in sockets:
        sock.setblocking(False)
        try:
            data = sock.recv(1)
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
        else:
            alive += 0 if not data else 1  # a byte (a ping?) still means open
        finally:
            sock.setblocking(True)
    return alive


def close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        abort(sock)


def _settled_rss(server: ServerProcess) -> int:
    server.wait_idle()
    server.collect_garbage()
    return server.rss()


def measure_one(variant: str, connections: int) -> Reading:
    """Start ``variant`` fresh, warm it up, and read its RSS before and after ``connections``."""
    limits = {"nofile": connections + 1024, "max_connections": connections + 100}
    with run_server(variant, **limits) as server:
        idle_fds = server.open_files()
        close_all(open_idle(server.port, min(WARMUP_CONNECTIONS, connections)))
        server.wait_open_files(idle_fds)  # the warm-up connections are gone, not just closing
        baseline = _settled_rss(server)
        start = time.monotonic()
        sockets = open_idle(server.port, connections)
        try:
            open_seconds = time.monotonic() - start
            loaded = _settled_rss(server)
            fds = server.open_files()
            alive = still_open(sockets)
            if alive != connections:
                raise BenchError(
                    f"{variant}: only {alive} of {connections} connections still open when "
                    f"the RSS was read ({time.monotonic() - start:.1f} s after the first one)"
                )
        finally:
            close_all(sockets)
    return Reading(variant, connections, baseline, loaded, open_seconds, fds)


def measure(connections: int, rounds: int) -> list[Reading]:
    """Alternate the two servers, ``rounds`` readings each."""
    readings = []
    for round_ in range(rounds):
        order = ("corral", "bare") if round_ % 2 == 0 else ("bare", "corral")
        for variant in order:
            readings.append(measure_one(variant, connections))
    return readings


def report(readings: list[Reading], connections: int, rounds: int) -> str:
    """The results table: one line per server, medians over the rounds."""
    mib = 2**20
    lines = [
        f"memory per idle connection, {connections:,} connections, each upgraded and echoed "
        f"once; server RSS after gc.collect(), {rounds} round(s), medians",
        f"{'server':<7} {'baseline MiB':>12} {'loaded MiB':>10} {'KB/conn':>8} {'(rounds)':>11} "
        f"{'target':>8}  {'result':<6} {'open s':>6} {'conn/s':>7} {'fds':>6}",
    ]
    per_kb: dict[str, float] = {}
    for variant in ("corral", "bare"):
        mine = [r for r in readings if r.variant == variant]
        kb = [r.per_connection / 1000 for r in mine]
        per_kb[variant] = statistics.median(kb)
        opened = statistics.median(r.open_seconds for r in mine)
        target, verdict = "-", ""
        if variant == "corral":
            target = f"<={TARGET_KB:g} KB"
            verdict = "PASS" if per_kb[variant] <= TARGET_KB else "MISS"
        lines.append(
            f"{variant:<7} {statistics.median(r.baseline for r in mine) / mib:>12.1f} "
            f"{statistics.median(r.loaded for r in mine) / mib:>10.1f} {per_kb[variant]:>8.1f} "
            f"{f'{min(kb):.1f}-{max(kb):.1f}':>11} {target:>8}  {verdict:<6} {opened:>6.1f} "
            f"{connections / opened:>7,.0f} {max(r.server_fds for r in mine):>6,}"
        )
    lines.append(
        f"corral/bare: {per_kb['corral'] / per_kb['bare']:.2f}x the memory per connection; "
        f"all {connections:,} connections open at every reading"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse the sizes, measure both servers, print the table; 0 unless something broke."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 connections, for a smoke run")
    parser.add_argument("--connections", type=int, help="idle connections (default 10000)")
    parser.add_argument("--rounds", type=int, default=1, help="readings per server (default 1)")
    args = parser.parse_args(argv)
    connections = args.connections or (1_000 if args.quick else 10_000)
    limit = raise_nofile(connections + 1024)
    if limit < connections + 64:
        print(
            f"idle_memory: open-files limit {limit} is too low for {connections:,}", file=sys.stderr
        )
        return 1
    try:
        readings = measure(connections, args.rounds)
    except BenchError as exc:
        print(f"idle_memory: {exc}", file=sys.stderr)
        return 1
    print(report(readings, connections, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
