"""A hot code upgrade under load: live connections on a steady stream, and a prober's p99.

``corral serve`` runs a small app (written to a temporary directory): a ticker actor publishes
tick ``n`` to each ``/stream`` connection every ``--interval`` seconds (to one of 20 groups at a
time, so the stream is steady rather than a burst per tick), and each connection's handler
sends ``<version> <n> <count>``, where ``count`` is its own state. Client processes
(``upgrade_clients.py``) hold ``--connections`` of them and check every frame (no gap in ``n``:
nothing lost; ``count`` up by one: the state kept). A prober on ``/echo`` measures round trips
every 10 ms. After ``--before`` seconds the app's file is rewritten as version 2 (its state a
dict, converted by ``code_change``) and the server gets SIGHUP. The bench prints the sockets
closed and messages lost (both must be 0), the time until every live connection ran the new
code, the prober's p99 before and from the upgrade on (the target: under 50 ms more), and the
CPU of the server and of the clients.

Run: ``python bench/upgrade.py [--connections N] [--interval S] [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
from common import ROOT, free_port, raise_nofile
from wsclient import CLOSE_1000, BenchError, abort, client_frame, open_websocket, split_frames

TARGET_MS = 50.0
"""An upgrade may add at most this much to the prober's p99 round trip."""

APP = """
import trio
import actors
from server import App, ConnectionOptions, Text, Upgrade, WebSocketHandler, websocket


GROUPS = 20


async def ticker(actor, interval):
    n = 0
    while True:
        for group in range(GROUPS):  # a group at a time: a steady stream, not a burst a tick
            await trio.sleep(interval / GROUPS)
            actors.publish(f"stream:{group}", ("tick", n))
        n += 1


class Stream(WebSocketHandler):
    version = "VERSION"

    def init(self, request):
        return Upgrade(INITIAL)

    def websocket_init(self, state):
        actors.join(f"stream:{actors.self_address().serial % GROUPS}")
        return None, state

    def websocket_info(self, message, state):
        count = COUNT + 1
        return Text(f"VERSION {message[1]} {count}"), NEW_STATE

    def code_change(self, old_version, state, extra):
        return CHANGE


class Echo(WebSocketHandler):
    def websocket_handle(self, frame, state):
        return frame, state


OPTIONS = ConnectionOptions(idle_timeout=None, mailbox_capacity=64)
app = App(
    [websocket("/stream", Stream(), options=OPTIONS), websocket("/echo", Echo(), options=OPTIONS)],
    children=[actors.ChildSpec("ticker", ticker, args=(INTERVAL,))],
)
"""


def app_source(version: int, interval: float) -> str:
    """The bench app at ``version`` 1 (state: an int) or 2 (a dict, converted)."""
    one = version == 1
    return (
        APP.replace("VERSION", str(version))
        .replace("INITIAL", "-1" if one else '{"count": -1}')
        .replace("COUNT", "state" if one else 'state["count"]')
        .replace("NEW_STATE", "count" if one else '{"count": count}')
        .replace("CHANGE", "state" if one else '{"count": state}')
        .replace("INTERVAL", repr(interval))
    )


class Prober(threading.Thread):
    """A well-behaved client: a round trip on ``/echo`` every 10 ms, timed (monotonic ns)."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.sock = open_websocket(port, "/echo")
        self.samples: list[tuple[int, float]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        frame, buffer = client_frame(b"probe"), bytearray()
        while not self.stopping.is_set():
            sent = time.monotonic_ns()
            self.sock.sendall(frame)
            while not split_frames(buffer):
                data = self.sock.recv(65536)
                if not data:
                    raise BenchError("the prober's connection closed")
                buffer += data
            self.samples.append((sent, (time.monotonic_ns() - sent) / 1e6))
            time.sleep(0.01)

    def p99(self, start: int, end: int) -> float:
        """The 99th percentile round trip (ms) of the probes sent in ``[start, end)``."""
        window = sorted(ms for at, ms in self.samples if start <= at < end)
        if not window:
            return float("nan")
        return window[min(len(window) - 1, int(len(window) * 0.99))]


def _server(directory: Path, port: int, connections: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-c",
        "import resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, "
        f"({connections + 1024}, {connections + 1024})); "
        "from server.run.cli import main; sys.exit(main(sys.argv[1:]))",
        "serve",
        "hot_stream:app",
        "--port",
        str(port),
        "--log-level",
        "info",  # the upgrade's report; no line per connection until one closes
        "--max-connections",
        str(connections + 100),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = (directory / "server.log").open("wb")
    return subprocess.Popen(command, cwd=directory, env=env, stdout=log, stderr=subprocess.STDOUT)


def _clients(port: int, connections: int, processes: int) -> list[subprocess.Popen[str]]:
    script = Path(__file__).resolve().with_name("upgrade_clients.py")
    share = [connections // processes + (i < connections % processes) for i in range(processes)]
    return [
        subprocess.Popen(
            [sys.executable, str(script), "--port", str(port), "--count", str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for count in share
        if count
    ]


def _wait_listening(port: int, server: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise BenchError("the server exited at start-up")
        try:
            sock = open_websocket(port, "/echo", timeout=1.0)
        except OSError:
            time.sleep(0.1)
            continue
        sock.sendall(CLOSE_1000)
        abort(sock)
        return
    raise BenchError("the server did not start")


def run(connections: int, interval: float, before: float, after: float, processes: int) -> int:
    raise_nofile(connections + 1024)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="corral-upgrade-bench-") as scratch:
        directory = Path(scratch)
        source = directory / "hot_stream.py"
        source.write_text(app_source(1, interval))
        server = _server(directory, port, connections)
        clients: list[subprocess.Popen[str]] = []
        try:
            _wait_listening(port, server)
            clients = _clients(port, connections, processes)
            for client in clients:
                assert client.stdout is not None
                if client.stdout.readline().strip() != "ready":
                    raise BenchError("a client process did not connect")
            prober = Prober(port)
            prober.start()
            serving = psutil.Process(server.pid)
            cpu_before = serving.cpu_times()
            time.sleep(before)
            source.write_text(app_source(2, interval))
            upgraded_at = time.monotonic_ns()
            server.send_signal(signal.SIGHUP)
            time.sleep(after)
            ended_at = time.monotonic_ns()
            cpu_after = serving.cpu_times()
            prober.stopping.set()
            results = [_result(client) for client in clients]
            report = (directory / "server.log").read_text()
        finally:
            for client in clients:
                client.kill()
            server.send_signal(signal.SIGKILL)
            server.wait()
    return _print(
        connections,
        interval,
        results,
        prober,
        upgraded_at,
        ended_at,
        before,
        cpu_after.user + cpu_after.system - cpu_before.user - cpu_before.system,
        report,
    )


def _result(client: subprocess.Popen[str]) -> dict[str, Any]:
    assert client.stdin is not None and client.stdout is not None
    client.stdin.write("stop\n")
    client.stdin.flush()
    line = client.stdout.readline()
    if not line:
        raise BenchError("a client process ended without its report")
    result: dict[str, Any] = json.loads(line)
    return result


def _print(
    connections: int,
    interval: float,
    results: list[dict[str, Any]],
    prober: Prober,
    upgraded_at: int,
    ended_at: int,
    before: float,
    server_cpu: float,
    log: str,
) -> int:
    frames = sum(r["frames"] for r in results)
    lost = sum(r["gaps"] for r in results)
    breaks = sum(r["breaks"] for r in results)
    closed = sum(r["closed"] for r in results)
    moved = [t for r in results for t in r["v2"]]
    on_old = sum(1 for t in moved if not t)
    delays = sorted((t - upgraded_at) / 1e6 for t in moved if t)
    window = int((before - 1.0) * 1e9)
    baseline = prober.p99(upgraded_at - window, upgraded_at)
    during = prober.p99(upgraded_at, ended_at)
    client_cpu = sum(r["cpu"] for r in results)
    lines = [line for line in log.splitlines() if "upgrade" in line]
    print(f"upgrade under load: {connections:,} connections, a tick every {interval:g} s each")
    print(f"server: {lines[-1].split(': ', 1)[-1] if lines else '(no upgrade line in its log)'}")
    print(
        f"frames received {frames:,}; sockets closed {closed}; messages lost {lost}; "
        f"states broken {breaks}"
    )
    if delays:
        print(
            f"time until every live connection ran the new code: {delays[-1]:.0f} ms "
            f"(median {statistics.median(delays):.0f} ms); still on old code: {on_old}"
        )
    added = during - baseline
    verdict = "MET" if added < TARGET_MS else "MISS"
    print(
        f"prober p99 round trip: {baseline:.1f} ms before, {during:.1f} ms from the upgrade on "
        f"(+{added:.1f} ms, target < {TARGET_MS:g}) {verdict}"
    )
    print(f"CPU from the prober's start on: server {server_cpu:.2f} s, clients {client_cpu:.2f} s")
    ok = closed == 0 and lost == 0 and breaks == 0 and on_old == 0
    print(
        "zero sockets closed, zero messages lost, every connection moved: "
        + ("MET" if ok else "MISS")
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between ticks")
    parser.add_argument("--before", type=float, default=5.0, help="seconds before the upgrade")
    parser.add_argument("--after", type=float, default=5.0, help="seconds after it")
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--quick", action="store_true", help="200 connections, short")
    args = parser.parse_args(argv)
    if args.quick:
        args.connections, args.before, args.after = 200, 2.0, 2.0
    return run(args.connections, args.interval, args.before, args.after, args.processes)


if __name__ == "__main__":
    sys.exit(main())
