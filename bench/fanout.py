"""Fan-out: one publisher, N subscribers in one group; corral against websockets' broadcast().

Four servers run for the whole benchmark, each in its own process on 127.0.0.1 (started by
``common.py``): corral, where subscribers join a group and each publish is one
``server.broadcast`` (frame encoded once, pushed to every outbox); ``cowboy``, the same group
the Cowboy way (``actors.publish`` a message, each subscriber's ``websocket_info`` returns the
``Text`` frame); websockets on asyncio with its ``broadcast()`` (``websockets_server.py``); and
a naive trio-websocket loop of ``send_message`` per subscriber (``fanout_server.py``). Each
round connects N subscribers from separate client processes (``fanout_clients.py``, plain
sockets), waits until all are subscribed, then one publisher sends M messages back to back,
each stamped with the monotonic time just before it is sent. The clients note when each frame
arrives.

Per round: deliveries per second (N*M over the time from the first send to the last arrival),
p50/p99 delivery latency (arrival minus stamp), and the server's CPU seconds. Every connection
must get all M messages, in order: a lost or reordered delivery is a failure (exit status 1).
The targets (medians of the rounds, against websockets: corral >= 2x, cowboy >= 1x) are only
reported.

Run: ``python bench/fanout.py [--quick] [--connections N] [--messages M] [--rounds R]``; with
``--connections 10000`` it uses several client processes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import select
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import psutil  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import FANOUT_VARIANTS as VARIANTS  # noqa: E402
from common import ServerProcess, raise_nofile  # noqa: E402
from fanout_clients import Publisher  # noqa: E402
from wsclient import BenchError  # noqa: E402

BENCH = Path(__file__).resolve().parent
TARGETS = {"corral": 2.0, "cowboy": 1.0}
"""Issue 9: deliveries/s against websockets' ``broadcast()``: corral's ``server.broadcast`` at
least twice as fast, the Cowboy way (``actors.publish`` + ``websocket_info``) at least as fast."""
BASELINE = "websockets"
CLIENT_SHARE = 0.5
"""The subscribers' CPU during a round must stay under this share of every server's."""
PADDING = 40
"""Text in each message, so a frame is chat-sized (~110 bytes)."""
CONNECTIONS_PER_PROCESS = 2500


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


def start_clients(
    port: int, sizes: Sizes, sources: Sequence[str] = (), nap: float = 0.0
) -> list[subprocess.Popen[str]]:
    """The subscriber processes of one round, sharing ``sizes.connections`` between them,
    each connecting from the next of ``sources`` (127.0.0.x) in turn when given, and
    sleeping ``nap`` seconds between passes over its ready connections."""
    share = math.ceil(sizes.connections / sizes.processes)
    counts = [min(share, sizes.connections - i * share) for i in range(sizes.processes)]
    command = [sys.executable, str(BENCH / "fanout_clients.py"), "--port", str(port)]
    command += ["--messages", str(sizes.messages), "--timeout", str(sizes.timeout)]
    command += ["--nap", str(nap)]
    return [
        subprocess.Popen(
            command
            + ["--count", str(count)]
            + (["--source", sources[index % len(sources)]] if sources else []),
            stdout=subprocess.PIPE,
            text=True,
        )
        for index, count in enumerate(counts)
        if count > 0
    ]


def read_line(process: subprocess.Popen[str], timeout: float, what: str) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    line = process.stdout.readline() if ready else ""
    if not line:
        raise BenchError(f"a client process gave no {what} within {timeout:.0f} s")
    return line


def run_round(server: ServerProcess, sizes: Sizes) -> Round:
    """Subscribe, publish M messages, collect what every client got."""
    server.wait_idle()
    clients = start_clients(server.port, sizes)
    try:
        for client in clients:
            assert read_line(client, 120.0, "ready line").strip() == "ready"
        server.check_alive()
        cpu_before = server.cpu_seconds()
        publisher = Publisher(server.port)
        first_sent = publisher.publish(0, PADDING)
        for seq in range(1, sizes.messages):
            time.sleep(sizes.interval)
            publisher.publish(seq, PADDING)
        reports = [
            json.loads(read_line(client, sizes.timeout + 30, "report")) for client in clients
        ]
        cpu = server.cpu_seconds() - cpu_before
        publisher.close()
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
            client.wait()
    return summarise(server.variant, sizes, reports, first_sent, cpu)


def summarise(
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
    f"{'round':<7}{'server':<11}{'delivered':>19}{'deliveries/s':>15}"
    f"{'p50 ms':>9}{'p99 ms':>9}{'server CPU s':>14}{'client CPU s':>14}"
)


def _row(label: str, result: Round) -> str:
    delivered = f"{result.delivered:,}/{result.expected:,}"
    return (
        f"{label:<7}{result.variant:<11}{delivered:>19}{result.rate:>15,.0f}"
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
    limits = {"nofile": sizes.connections + 1024, "max_connections": sizes.connections + 64}
    servers = {v: ServerProcess(v, role="fanout", **limits) for v in VARIANTS}
    results: dict[str, list[Round]] = {variant: [] for variant in VARIANTS}
    try:
        for server in servers.values():
            server.start()
        print(HEADER, flush=True)
        for number in range(1, sizes.rounds + 1):
            shift = number % len(VARIANTS)
            order = VARIANTS[shift:] + VARIANTS[:shift]
            for variant in order:
                result = run_round(servers[variant], sizes)
                results[variant].append(result)
                print(_row(str(number), result), flush=True)
    finally:
        for server in servers.values():
            server.stop()
    for variant in VARIANTS:
        print(_row("median", _median(results[variant])))
    print("\n".join(ratios(results)))
    print(check_deliveries(results, sizes))
    return 0


def ratios(results: dict[str, list[Round]]) -> list[str]:
    """Each server against websockets (medians), the targets, and the client's CPU check."""
    baseline, lines = _median(results[BASELINE]), []
    for variant in VARIANTS:
        if variant == BASELINE:
            continue
        mine = _median(results[variant])
        ratio = mine.rate / baseline.rate
        per_cpu = baseline.server_cpu / mine.server_cpu if mine.server_cpu else math.nan
        target = TARGETS.get(variant)
        verdict = f"  target >= {target:.1f}x  {_verdict(ratio, target)}" if target else ""
        lines.append(
            f"{variant}/{BASELINE} deliveries/s (median): {ratio:.2f}x{verdict}; "
            f"per server CPU-second {per_cpu:.2f}x"
        )
    share = max(
        median.client_cpu / median.server_cpu if median.server_cpu else math.inf
        for median in map(_median, results.values())
    )
    lines.append(
        f"client CPU at most {share:.2f}x the server's (must stay under {CLIENT_SHARE:.1f}x) "
        f"{'PASS' if share < CLIENT_SHARE else 'MISS'}"
    )
    return lines


def _verdict(ratio: float, target: float) -> str:
    return "PASS" if round(ratio, 2) >= target else "MISS"


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
