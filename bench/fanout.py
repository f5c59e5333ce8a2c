"""Fan-out: one publisher, N subscribers in one group; corral's broadcast against a naive loop.

Both servers run for the whole benchmark, each in its own process on 127.0.0.1
(``fanout_server.py``): corral, where subscribers join a group and each publish is one
``server.broadcast`` (frame encoded once, pushed to every outbox); and a bare trio-websocket
server that loops over its subscribers calling ``send_message`` for each publish. Each round
connects N subscribers from separate client processes (``fanout_clients.py``, plain sockets),
waits until all are subscribed, then one publisher sends M messages back to back, each stamped
with the monotonic time just before it is sent. The clients note when each frame arrives.

Per round: deliveries per second (N*M over the time from the first send to the last arrival),
p50/p99 delivery latency (arrival minus stamp), and the server's CPU seconds. Every connection
must get all M messages, in order: a lost or reordered delivery is a failure (exit status 1).
The target (corral >= 2x the naive deliveries/s, median of the rounds) is only reported.

Run: ``python bench/fanout.py [--quick] [--connections N] [--messages M] [--rounds R]``; with
``--connections 10000`` it raises RLIMIT_NOFILE (as root) and uses several client processes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import select
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import psutil  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fanout_clients import HOST, Publisher  # noqa: E402
from fanout_server import VARIANTS, raise_nofile  # noqa: E402

BENCH = Path(__file__).resolve().parent
TARGET = 2.0
"""Issue 4: corral's deliveries per second at least twice the naive loop's."""
PADDING = 40
"""Text in each message, so a frame is chat-sized (~110 bytes)."""
CONNECTIONS_PER_PROCESS = 2500


class BenchError(RuntimeError):
    """The benchmark could not run as intended (a process died, a client never got ready)."""


class LostDelivery(AssertionError):
    """Some connection did not get every message, in order."""


@attrs.frozen
class Sizes:
    """How big each round is and how many rounds run."""

    connections: int
    messages: int
    rounds: int
    processes: int
    interval: float = 0.0
    """Seconds between publishes (0: back to back)."""

    @property
    def timeout(self) -> float:
        """How long clients wait for every message (allowing 500 deliveries/s at worst)."""
        return max(30.0, self.connections * self.messages / 500 + self.messages * self.interval)


@attrs.frozen
class Round:
    """One round's figures for one server."""

    variant: str
    delivered: int
    expected: int
    complete: int
    """Connections that got every message in order."""
    rate: float
    p50_ms: float
    p99_ms: float
    server_cpu: float
    client_cpu: float

    @property
    def lost(self) -> int:
        return self.expected - self.delivered


class ServerProcess:
    """One fan-out server in a subprocess."""

    def __init__(self, variant: str, max_connections: int) -> None:
        self.variant = variant
        self.port = _free_port()
        command = [sys.executable, str(BENCH / "fanout_server.py"), variant]
        command += ["--port", str(self.port), "--max-connections", str(max_connections)]
        self.popen = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.process = psutil.Process(self.popen.pid)

    def wait_listening(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                socket.create_connection((HOST, self.port), timeout=1.0).close()
                return
            except OSError:
                time.sleep(0.05)
        raise BenchError(f"{self.variant} server not listening after {timeout} s")

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            err = self.popen.stderr.read().decode(errors="replace") if self.popen.stderr else ""
            raise BenchError(f"{self.variant} server exited ({self.popen.returncode}):\n{err}")

    def cpu_seconds(self) -> float:
        times = self.process.cpu_times()
        return float(times.user + times.system)

    def settle(self, timeout: float = 20.0) -> None:
        """Wait until the server is idle (it may still be closing the last round's clients)."""
        deadline = time.monotonic() + timeout
        before = self.cpu_seconds()
        while time.monotonic() < deadline:
            time.sleep(0.2)
            now = self.cpu_seconds()
            if now - before < 0.01:
                return
            before = now

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(5.0)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _start_clients(port: int, sizes: Sizes) -> list[subprocess.Popen[str]]:
    share = math.ceil(sizes.connections / sizes.processes)
    counts = [min(share, sizes.connections - i * share) for i in range(sizes.processes)]
    command = [sys.executable, str(BENCH / "fanout_clients.py"), "--port", str(port)]
    command += ["--messages", str(sizes.messages), "--timeout", str(sizes.timeout)]
    return [
        subprocess.Popen(command + ["--count", str(count)], stdout=subprocess.PIPE, text=True)
        for count in counts
        if count > 0
    ]


def _read_line(process: subprocess.Popen[str], timeout: float, what: str) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    line = process.stdout.readline() if ready else ""
    if not line:
        raise BenchError(f"a client process gave no {what} within {timeout:.0f} s")
    return line


def run_round(server: ServerProcess, sizes: Sizes) -> Round:
    """Subscribe, publish M messages, collect what every client got."""
    server.settle()
    clients = _start_clients(server.port, sizes)
    try:
        for client in clients:
            assert _read_line(client, 120.0, "ready line").strip() == "ready"
        server.check_alive()
        cpu_before = server.cpu_seconds()
        publisher = Publisher(server.port)
        first_sent = publisher.publish(0, PADDING)
        for seq in range(1, sizes.messages):
            time.sleep(sizes.interval)
            publisher.publish(seq, PADDING)
        reports = [
            json.loads(_read_line(client, sizes.timeout + 30, "report")) for client in clients
        ]
        cpu = server.cpu_seconds() - cpu_before
        publisher.close()
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
            client.wait()
    return _summarise(server.variant, sizes, reports, first_sent, cpu)


def _summarise(
    variant: str, sizes: Sizes, reports: list[dict[str, Any]], first_sent: int, cpu: float
) -> Round:
    latencies = sorted(us for report in reports for us in report["latencies_us"])
    delivered = sum(sum(report["counts"]) for report in reports)
    last = max(report["last"] for report in reports)
    seconds = max(last - first_sent, 1) / 1e9
    return Round(
        variant=variant,
        delivered=delivered,
        expected=sizes.connections * sizes.messages,
        complete=sum(report["in_order"] for report in reports),
        rate=delivered / seconds,
        p50_ms=_percentile(latencies, 0.50) / 1000,
        p99_ms=_percentile(latencies, 0.99) / 1000,
        server_cpu=cpu,
        client_cpu=sum(report["cpu"] for report in reports),
    )


def _percentile(values: list[int], fraction: float) -> float:
    if not values:
        return math.nan
    return float(values[min(len(values) - 1, int(fraction * len(values)))])


# ---- the printout -------------------------------------------------------------------------

HEADER = (
    f"{'round':<7}{'server':<8}{'delivered':>19}{'deliveries/s':>15}"
    f"{'p50 ms':>9}{'p99 ms':>9}{'server CPU s':>14}{'client CPU s':>14}"
)


def _row(label: str, result: Round) -> str:
    delivered = f"{result.delivered:,}/{result.expected:,}"
    return (
        f"{label:<7}{result.variant:<8}{delivered:>19}{result.rate:>15,.0f}"
        f"{result.p50_ms:>9.1f}{result.p99_ms:>9.1f}{result.server_cpu:>14.2f}"
        f"{result.client_cpu:>14.2f}"
    )


def _median(results: list[Round]) -> Round:
    """A synthetic round of the medians (deliveries are summed, for the loss line)."""
    return Round(
        variant=results[0].variant,
        delivered=sum(r.delivered for r in results),
        expected=sum(r.expected for r in results),
        complete=sum(r.complete for r in results),
        rate=statistics.median(r.rate for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        server_cpu=statistics.median(r.server_cpu for r in results),
        client_cpu=statistics.median(r.client_cpu for r in results),
    )


def check_deliveries(results: dict[str, list[Round]], sizes: Sizes) -> str:
    """The delivery line; LostDelivery if any connection missed or reordered a message."""
    parts, problems = [], []
    for variant, rounds in results.items():
        total = _median(rounds)
        parts.append(f"{variant} {total.delivered:,}/{total.expected:,}")
        connections = sizes.connections * len(rounds)
        if total.lost or total.complete != connections:
            problems.append(
                f"{variant}: {total.lost:,} of {total.expected:,} deliveries lost, "
                f"{connections - total.complete:,} of {connections:,} connections incomplete "
                "or out of order"
            )
    if problems:
        raise LostDelivery("; ".join(problems))
    lost = sum(_median(rounds).lost for rounds in results.values())
    listed = ", ".join(parts)
    return f"delivered: every message to every connection, in order: {listed}; {lost} lost"


def run(sizes: Sizes) -> int:
    """Run every round on both servers, print the table, the ratio and the delivery line."""
    raise_nofile(sizes.connections + 1024)
    pace = f"{sizes.interval * 1000:g} ms apart" if sizes.interval else "back to back"
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(
        f"fan-out: {sizes.connections:,} connections in one group, one publisher, "
        f"{sizes.messages} messages per round {pace}, {sizes.rounds} round(s), "
        f"{sizes.processes} client process(es); {psutil.cpu_count()} CPUs, load {load}",
        flush=True,
    )
    servers = {variant: ServerProcess(variant, sizes.connections + 64) for variant in VARIANTS}
    results: dict[str, list[Round]] = {variant: [] for variant in VARIANTS}
    try:
        for server in servers.values():
            server.wait_listening()
        print(HEADER, flush=True)
        for number in range(1, sizes.rounds + 1):
            order = VARIANTS if number % 2 else VARIANTS[::-1]
            for variant in order:
                result = run_round(servers[variant], sizes)
                results[variant].append(result)
                print(_row(str(number), result), flush=True)
    finally:
        for server in servers.values():
            server.stop()
    for variant in VARIANTS:
        print(_row("median", _median(results[variant])))
    corral, naive = _median(results["corral"]), _median(results["naive"])
    ratio = corral.rate / naive.rate
    verdict = "PASS" if ratio >= TARGET else "MISS"
    print(f"corral/naive deliveries/s (median): {ratio:.2f}x  target >= {TARGET:.1f}x  {verdict}")
    per_cpu = naive.server_cpu / corral.server_cpu if corral.server_cpu else math.nan
    print(f"corral/naive deliveries per server CPU-second (median): {per_cpu:.2f}x")
    print(check_deliveries(results, sizes))
    return 0


def parse_sizes(argv: list[str] | None) -> Sizes:
    """Sizes from the command line (``--quick``: 200 connections, 20 messages, one round)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--client-processes", type=int, help="default: one per 2,500 connections")
    parser.add_argument("--interval", type=float, default=0.0, help="seconds between publishes")
    args = parser.parse_args(argv)
    if args.quick:
        args.connections, args.rounds = 200, 1
    processes = args.client_processes or math.ceil(args.connections / CONNECTIONS_PER_PROCESS)
    return Sizes(args.connections, args.messages, args.rounds, max(1, processes), args.interval)


def main(argv: list[str] | None = None) -> int:
    try:
        return run(parse_sizes(argv))
    except (BenchError, LostDelivery) as exc:
        print(f"fan-out benchmark failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
