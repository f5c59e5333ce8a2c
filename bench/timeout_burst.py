"""A live client's worst round trip while thousands of silent connections time out together.

Starts the echo with an idle timeout (``timeout_app.py``, ``--idle-timeout`` seconds) in a
server process, a live client in another process (one message, its echo, every 2 ms, on its
own connection), then opens ``--silent`` connections that each send one frame at about the
same instant and then nothing: their idle timeouts fall due together. Each silent client
answers the server's close and goes. Prints the live client's worst and 99th-percentile round
trip before the burst and during it, the server's longest scheduler passes in CPU time (not
stretched by a busy machine), and the holds its watchdog logged.

    python bench/timeout_burst.py --silent 5000
    python bench/timeout_burst.py --silent 5000 --tree /path/to/old/checkout  # A/B

127.0.0.1 only; bounded: ``--silent`` connections, each phase with a deadline.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, ServerProcess, raise_nofile
from wsclient import CLOSE, BenchError, abort, client_frame, open_websocket

IDLE_ENV = "CORRAL_BENCH_IDLE_TIMEOUT"
"""The idle timeout ``timeout_app`` serves with (it reads it in the server process)."""
LIVE_EVERY = 0.002
"""Seconds between the live client's round trips."""
_BLOCKED = re.compile(r"loop blocked for (\d+) ms")
_PASSES = re.compile(r"^PASSES (.*)$", re.MULTILINE)


def live(port: int) -> None:
    """The live client (its own process): a round trip every ``LIVE_EVERY`` until a line
    comes on stdin; prints one JSON list of [wall time sent, round trip seconds]."""
    sock = open_websocket(port)
    frame, trips = client_frame(b"live"), []
    while not select.select([sys.stdin], [], [], 0)[0]:
        sent = time.time()
        sock.sendall(frame)
        got = b""
        while len(got) < 6:  # the echo: a 2-byte header and "live"
            chunk = sock.recv(6 - len(got))
            if not chunk:
                raise BenchError("the server closed the live client")
            got += chunk
        trips.append([sent, time.time() - sent])
        time.sleep(LIVE_EVERY)
    abort(sock)
    print(json.dumps(trips))


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def _close_when_asked(silent: list[socket.socket], deadline: float) -> int:
    """Read each silent connection until the server's close, answer it, close; how many
    were closed by the server."""
    answer, closed = client_frame(b"\x03\xe8", CLOSE), 0
    for sock in silent:
        sock.settimeout(max(0.1, deadline - time.time()))
        data = b""
        try:
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
                if bytes([0x80 | CLOSE]) in data:  # the close frame (after the one echo)
                    sock.sendall(answer)
                    closed += 1
                    break
        except OSError:
            pass
        abort(sock)
    return closed


def run(silent_count: int, idle: float, tree: Path) -> int:
    raise_nofile(2 * silent_count + 1000)
    os.environ[IDLE_ENV] = str(idle)
    server = ServerProcess(
        "corral",
        app="timeout_app:app",
        nofile=silent_count + 1000,
        max_connections=silent_count + 100,
        tree=tree,
    )
    server.start()
    try:
        started = time.time()
        probe = subprocess.Popen(
            [sys.executable, __file__, "--live", str(server.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        silent = [open_websocket(server.port) for _ in range(silent_count)]
        opened = time.time()
        one = client_frame(b"x")
        for sock in silent:  # their idle timers start together
            sock.sendall(one)
        burst = time.time() + idle
        closed = _close_when_asked(silent, burst + 30)
        ended = time.time()
        time.sleep(1.5)  # the live client goes on a little; the long passes are printed
        out, _ = probe.communicate(b"stop\n", timeout=30)
        log = server.stderr_text()
    finally:
        server.stop()
    trips = json.loads(out)
    before = [rtt for sent, rtt in trips if opened < sent < burst - 1]
    during = [rtt for sent, rtt in trips if burst - 0.5 <= sent <= ended]
    blocked = [int(ms) for ms in _BLOCKED.findall(log)]
    passes = [pass_ for line in _PASSES.findall(log) for pass_ in json.loads(line)]
    passes_before = [cpu for at, cpu in passes if opened < at < burst - 1]
    passes_during = [cpu for at, cpu in passes if burst - 0.5 <= at <= ended]
    print(
        f"{silent_count} silent connections (opened in {opened - started:.1f} s), idle timeout "
        f"{idle:g} s: {closed} closed by the server in {ended - burst:.2f} s after the timeout"
    )
    print(
        f"live client round trip, ms: before worst {max(before, default=0) * 1000:.1f} "
        f"p99 {_percentile(before, 0.99) * 1000:.1f} ({len(before)} trips); during the burst "
        f"worst {max(during, default=0) * 1000:.1f} p99 {_percentile(during, 0.99) * 1000:.1f} "
        f"({len(during)} trips)"
    )
    print(
        f"server's longest pass, CPU ms: before {max(passes_before, default=0) * 1000:.1f}, "
        f"during the burst {max(passes_during, default=0) * 1000:.1f} "
        f"({len(passes_during)} passes over 5 ms)"
    )
    print(f"watchdog: {len(blocked)} holds logged, longest {max(blocked, default=0)} ms")
    if os.environ.get("SHOW_HOLDS"):
        print("\n".join(line for line in log.splitlines() if "loop " in line))
    return 0 if closed == silent_count else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 connections, 3 s: a smoke run")
    parser.add_argument("--silent", type=int, default=5000, help="silent connections")
    parser.add_argument("--idle-timeout", type=float, default=15.0, help="seconds")
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout whose server runs")
    parser.add_argument("--live", type=int, help=argparse.SUPPRESS)  # the live client's port
    args = parser.parse_args()
    if args.live is not None:
        live(args.live)
        return 0
    if args.quick:
        args.silent, args.idle_timeout = 200, 3.0
    return run(args.silent, args.idle_timeout, args.tree)


if __name__ == "__main__":
    sys.exit(main())
