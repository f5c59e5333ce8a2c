"""Worker processes, measured: echo round trips and fan-out, ``--workers 2`` against 1.

``echo``: 200 connections to ``/echo``, one 32-byte message in flight each; the 1-worker and
the 2-worker servers run side by side and take turns round by round. Reported: round trips
per second (2 workers / 1 worker, target >= 1.3x) and server CPU per round trip, all of a
server's processes together (parent and workers; 2 / 1, target <= 1.1x).

``fanout``: 1,000 connections to ``/fan`` (group ``fan``) spread over the workers by the kernel,
one publisher connection sending 20 messages back to back; every connection must get all 20.
Reported: deliveries per second (2 workers / 1 worker, target >= 1.0x), delivery latency
p50/p99 (publish to receipt, one clock: publisher and receivers are this process), and lost
deliveries (target 0). Both servers use Redis (the group must span the workers); the Redis is
``--redis URL`` (default: 127.0.0.1:6379) with a key prefix of this run's own.

The load client is this process (plain sockets and epoll); it shares the machine's cores
with the servers, which caps the first ratio. Traffic goes to 127.0.0.1 only; each round is
bounded in time and the servers are stopped at the end.

Run: ``python bench/cluster_load.py echo|fanout [--quick] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import base64
import os
import select
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


class BenchError(RuntimeError):
    """Something other than speed went wrong (a wrong echo, a lost delivery, a dead server)."""


# ---- servers ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class Workers:
    """``corral serve bench.cluster_app:app --workers N`` in a subprocess."""

    def __init__(self, count: int, redis: str | None = None) -> None:
        self.count = count
        self.port = _free_port()
        self.command = [sys.executable, "-m", "server.run.cli", "serve", "bench.cluster_app:app"]
        self.command += ["--port", str(self.port), "--workers", str(count)]
        self.command += ["--log-level", "warning", "--max-connections", "5000"]
        if redis is not None:
            self.command += ["--redis", redis, "--cluster-prefix", f"bench:{uuid.uuid4().hex}"]
        self.log = tempfile.NamedTemporaryFile(prefix="corral-bench-", suffix=".log")
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        self.popen = subprocess.Popen(self.command, cwd=ROOT, stderr=self.log, stdout=self.log)
        deadline = time.monotonic() + timeout
        while len(self._listening_workers()) < self.count:
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"{self.count} workers did not start:\n{self._log_text()}")
            time.sleep(0.1)

    def _listening_workers(self) -> list[psutil.Process]:
        assert self.popen is not None
        return [
            child
            for child in psutil.Process(self.popen.pid).children()
            if any(
                c.status == psutil.CONN_LISTEN and c.laddr.port == self.port
                for c in child.net_connections(kind="tcp")
            )
        ]

    def _log_text(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def cpu_seconds(self) -> float:
        """User + system CPU of the parent and every worker so far."""
        assert self.popen is not None
        parent = psutil.Process(self.popen.pid)
        total = 0.0
        for process in (parent, *parent.children(recursive=True)):
            times = process.cpu_times()
            total += times.user + times.system
        return total

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()  # every worker drains; the parent exits 0
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.log.close()


@contextmanager
def running(count: int, redis: str | None = None) -> Iterator[Workers]:
    workers = Workers(count, redis)
    try:
        workers.start()
        yield workers
    finally:
        workers.stop()


# ---- a raw WebSocket client -----------------------------------------------------------


def _connect(port: int, path: str) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise BenchError("the server closed during the handshake")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise BenchError(f"upgrade refused: {head[:80]!r}")
    if head.split(b"\r\n\r\n", 1)[1]:
        raise BenchError("unexpected bytes after the upgrade")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def client_frame(payload: bytes, opcode: int = 0x2) -> bytes:
    """A masked client frame (payload under 126 bytes)."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload)) + mask + masked


def server_frames(buffer: bytearray) -> Iterator[bytes]:
    """Payloads of the complete unmasked frames (under 126 bytes) at the start of ``buffer``."""
    while len(buffer) >= 2:
        size = buffer[1] & 0x7F
        if size >= 126:
            raise BenchError("a frame of 126 bytes or more: not expected here")
        if len(buffer) < 2 + size:
            return
        payload = bytes(buffer[2 : 2 + size])
        del buffer[: 2 + size]
        yield payload


def _abort(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# ---- echo -------------------------------------------------------------------------------


def echo_round(
    workers: Workers, connections: int, warmup: float, seconds: float
) -> tuple[float, float]:
    """Round trips per second and server CPU microseconds per round trip, for one round."""
    payload = bytes(range(65, 97))
    frame, reply = client_frame(payload), struct.pack("!BB", 0x82, len(payload)) + payload
    sockets = {}
    poller = select.epoll()
    try:
        for _ in range(connections):
            sock = _connect(workers.port, "/echo")
            sock.setblocking(False)
            sockets[sock.fileno()] = sock
            poller.register(sock.fileno(), select.EPOLLIN)
        partial = dict.fromkeys(sockets, b"")
        for sock in sockets.values():
            sock.send(frame)
        trips = 0

        def run_until(deadline: float) -> None:
            nonlocal trips
            while time.perf_counter() < deadline:
                for fd, _ in poller.poll(0.1):
                    got = partial[fd] + sockets[fd].recv(4096)
                    if len(got) < len(reply):
                        partial[fd] = got
                        continue
                    if got != reply:
                        raise BenchError(f"wrong echo {got!r}")
                    partial[fd] = b""
                    trips += 1
                    sockets[fd].send(frame)

        run_until(time.perf_counter() + warmup)
        trips, cpu0, start = 0, workers.cpu_seconds(), time.perf_counter()
        run_until(start + seconds)
        wall, cpu = time.perf_counter() - start, workers.cpu_seconds() - cpu0
        if trips == 0:
            raise BenchError("no echo in a whole round")
        return trips / wall, 1e6 * cpu / trips
    finally:
        for sock in sockets.values():
            _abort(sock)
        poller.close()


def bench_echo(rounds: int, seconds: float, connections: int = 200) -> str:
    samples: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
    with running(1) as one, running(2) as two:
        servers = {1: one, 2: two}
        for server in servers.values():
            echo_round(server, connections, 0.2, 0.3)  # warm-up, not counted
        for round_ in range(rounds):
            for count in (1, 2) if round_ % 2 == 0 else (2, 1):
                samples[count].append(echo_round(servers[count], connections, 0.3, seconds))
    rate = {n: statistics.median(s[0] for s in samples[n]) for n in samples}
    cpu = {n: statistics.median(s[1] for s in samples[n]) for n in samples}
    ratio, cpu_ratio = rate[2] / rate[1], cpu[2] / cpu[1]
    return "\n".join(
        [
            f"echo, {connections} connections, 32-byte messages, one in flight each; "
            f"{rounds} rounds of {seconds:g} s interleaved, medians",
            f"{'workers':<8} {'rt/s':>9} {'server CPU us/rt':>17}",
            f"{1:<8} {rate[1]:>9,.0f} {cpu[1]:>17.1f}",
            f"{2:<8} {rate[2]:>9,.0f} {cpu[2]:>17.1f}",
            f"round trips/s 2/1: {ratio:.2f}x (target >= 1.3x: "
            f"{'PASS' if round(ratio, 2) >= 1.3 else 'MISS'}); "
            f"CPU per round trip 2/1: {cpu_ratio:.2f}x (target <= 1.1x: "
            f"{'PASS' if round(cpu_ratio, 2) <= 1.1 else 'MISS'})",
        ]
    )


# ---- fan-out ----------------------------------------------------------------------------


def fanout_round(
    workers: Workers, connections: int, messages: int
) -> tuple[float, list[float], int]:
    """Deliveries per second, every delivery's latency (s), and how many were lost."""
    sockets: dict[int, socket.socket] = {}
    poller = select.epoll()
    try:
        for _ in range(connections):
            sock = _connect(workers.port, "/fan")
            sockets[sock.fileno()] = sock
        publisher = _connect(workers.port, "/fan")  # also a member: it counts too
        sockets[publisher.fileno()] = publisher
        _wait_members(publisher, connections + 1)
        buffers = {fd: bytearray() for fd in sockets}
        for fd, sock in sockets.items():
            sock.setblocking(False)
            poller.register(fd, select.EPOLLIN)
        latencies: list[float] = []
        expected = messages * len(sockets)
        cpu0, client0 = workers.cpu_seconds(), time.process_time()
        start = time.perf_counter()
        for seq in range(messages):
            stamp = f"{seq} {time.perf_counter():.6f}".encode()
            publisher.send(client_frame(b"publish " + stamp, opcode=0x1))
        deadline = start + 30
        last = start
        while len(latencies) < expected and time.perf_counter() < deadline:
            for fd, _ in poller.poll(0.5):
                buffers[fd] += sockets[fd].recv(65536)
                now = time.perf_counter()
                for payload in server_frames(buffers[fd]):
                    latencies.append(now - float(payload.split()[1]))
                    last = now
        cpu = 1e6 * (workers.cpu_seconds() - cpu0) / max(1, len(latencies))
        client = (time.process_time() - client0) / (last - start)
        rate = len(latencies) / (last - start)
        return rate, latencies, expected - len(latencies), cpu, client
    finally:
        for sock in sockets.values():
            _abort(sock)
        poller.close()


def _wait_members(sock: socket.socket, count: int, timeout: float = 30.0) -> None:
    """Ask ``members`` until this connection's worker has heard of ``count`` members."""
    deadline = time.monotonic() + timeout
    buffer = bytearray()
    while time.monotonic() < deadline:
        sock.send(client_frame(b"members", opcode=0x1))
        while True:
            buffer += sock.recv(4096)
            answers = list(server_frames(buffer))
            if answers:
                break
        if int(answers[-1].split()[1]) >= count:
            return
        time.sleep(0.05)
    raise BenchError(f"the group never reached {count} members")


def bench_fanout(rounds: int, redis: str, connections: int = 1000, messages: int = 20) -> str:
    rates: dict[int, list[float]] = {1: [], 2: []}
    latencies: dict[int, list[float]] = {1: [], 2: []}
    lost = {1: 0, 2: 0}
    cpu: dict[int, list[float]] = {1: [], 2: []}
    client: dict[int, list[float]] = {1: [], 2: []}
    with running(1, redis) as one, running(2, redis) as two:
        servers = {1: one, 2: two}
        for round_ in range(rounds):
            for count in (1, 2) if round_ % 2 == 0 else (2, 1):
                rate, times, missing, per, load = fanout_round(
                    servers[count], connections, messages
                )
                rates[count].append(rate)
                cpu[count].append(per)
                client[count].append(load)
                latencies[count] += times
                lost[count] += missing
    lines = [
        f"fan-out: {connections} connections + the publisher, {messages} messages back to back, "
        f"{rounds} rounds interleaved; Redis {redis}",
        f"{'workers':<8} {'deliveries/s':>12} {'p50 ms':>7} {'p99 ms':>7} {'lost':>5} "
        f"{'server CPU us/delivery':>22} {'client CPU':>10}",
    ]
    for n in (1, 2):
        ordered = sorted(latencies[n]) or [0.0]
        p50, p99 = ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.99)]
        lines.append(
            f"{n:<8} {statistics.median(rates[n]):>12,.0f} {1e3 * p50:>7.1f} {1e3 * p99:>7.1f} "
            f"{lost[n]:>5} {statistics.median(cpu[n]):>22.1f} "
            f"{statistics.median(client[n]):>10.0%}"
        )
    ratio = statistics.median(rates[2]) / statistics.median(rates[1])
    verdict = "PASS" if round(ratio, 2) >= 1.0 and not any(lost.values()) else "MISS"
    lines.append(f"deliveries/s 2/1: {ratio:.2f}x (target >= 1.0x, 0 lost: {verdict})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", choices=["echo", "fanout"])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--seconds", type=float, default=2.0, help="echo: seconds per round")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379", help="fanout: Redis URL")
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 5)
    try:
        if args.which == "echo":
            print(
                bench_echo(
                    rounds,
                    0.3 if args.quick else args.seconds,
                    connections=20 if args.quick else 200,
                )
            )
        else:
            print(
                bench_fanout(
                    rounds,
                    args.redis,
                    connections=50 if args.quick else 1000,
                    messages=5 if args.quick else 20,
                )
            )
    except BenchError as exc:
        print(f"cluster_load: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
