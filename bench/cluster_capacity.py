"""100,000 connections on one machine: worker processes on Redis, one broadcast to all, then a
steady fan-out.

``corral serve bench/cluster_app.py --workers W --redis URL`` (6 workers by default: this
machine caps each process at 20,000 open files, and the kernel's SO_REUSEPORT spreads
connections over the workers about evenly) takes ``--connections`` subscribers to ``/sub``
(group ``fan``) from ``fanout_clients.py`` processes, each from its own 127.0.0.x source
address (10,000 per process: each source has about 28,000 loopback ports), one process opening
at a time. Once the publisher's
node knows every member, the publisher sends one message (the broadcast to all), waits until
every subscriber has it (at most 60 s), then ``--steady`` messages ``--interval`` s apart.

Printed: time to open all the connections; RSS of the server's processes (parent and
workers, summed) before and after, per connection; the broadcast's publish-to-last-delivery
time; the steady fan-out's deliveries/s, each message's publish-to-last-delivery time (median
and worst) and p50/p99 of every delivery; lost (target 0); CPU of the servers, the clients and
Redis. Everything is bounded in count and time, and every process started is stopped.

Run: ``python bench/cluster_capacity.py [--quick] [--connections N] [--workers W]``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster_load import SOURCES, Workers, redis_process, running  # noqa: E402
from common import raise_nofile, wait_idle  # noqa: E402
from fanout import PADDING, read_line  # noqa: E402
from fanout_clients import Publisher  # noqa: E402
from wsclient import BenchError  # noqa: E402

BENCH = Path(__file__).resolve().parent
PER_WORKER = 19_800
"""Connections one worker may hold: the 20,000 open files, less its own descriptors."""
PER_CLIENT = 10_000
"""Subscribers per client process (each its own source address and under its own file cap)."""


@attrs.frozen
class Plan:
    """How big the run is."""

    connections: int
    workers: int
    steady: int
    interval: float
    options: tuple[str, ...] = ()
    """More of ``corral serve``'s options (``--no-block-watchdog``...)."""

    @property
    def processes(self) -> int:
        return math.ceil(self.connections / PER_CLIENT)

    def check(self) -> None:
        """BenchError unless the workers and sources can hold the connections with room for
        the kernel's uneven spread (a tenth)."""
        if self.connections * 1.1 > self.workers * PER_WORKER:
            raise BenchError(
                f"{self.workers} workers hold at most {self.workers * PER_WORKER:,} connections "
                f"here (20,000 open files each); {self.connections:,} needs more: --workers"
            )
        if self.processes > len(SOURCES):
            raise BenchError(f"at most {len(SOURCES) * PER_CLIENT:,} connections: one source each")


def _open_subscribers(port: int, plan: Plan, timeout: float) -> list[subprocess.Popen[str]]:
    """Start the subscriber processes one after another, each once the one before has opened
    all of its connections: one process opening at a time leaves the workers' loops time for
    their heartbeats (all opening at once held each worker's loop for seconds on 2 cores, and
    the nodes thought each other down)."""
    command = [sys.executable, str(BENCH / "fanout_clients.py"), "--port", str(port)]
    command += ["--messages", str(1 + plan.steady), "--timeout", str(timeout), "--nap", "0.001"]
    share = math.ceil(plan.connections / plan.processes)
    clients: list[subprocess.Popen[str]] = []
    try:
        for i in range(plan.processes):
            count = min(share, plan.connections - i * share)
            clients.append(
                subprocess.Popen(
                    command + ["--count", str(count), "--source", SOURCES[i]],
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
            if read_line(clients[-1], 600.0, "ready line").strip() != "ready":
                raise BenchError("a subscriber process did not get ready")
    except BaseException:
        _stop(clients)
        raise
    return clients


def _stop(clients: list[subprocess.Popen[str]]) -> None:
    for client in clients:
        if client.poll() is None:
            client.kill()
        client.wait()


def _cpu(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def measure(plan: Plan, redis: str) -> str:
    plan.check()
    raise_nofile(20_000)
    broker = redis_process(redis)
    lines = [
        f"{plan.connections:,} connections over {plan.workers} workers (--redis {redis}), "
        f"{plan.processes} client processes ({SOURCES[0]}..{SOURCES[plan.processes - 1]}); "
        f"serve options: {' '.join(plan.options) or 'the defaults'}; "
        f"{psutil.cpu_count()} CPUs, load "
        + ", ".join(f"{value:.1f}" for value in psutil.getloadavg())
    ]
    with running(plan.workers, redis, max_connections=PER_WORKER, options=plan.options) as workers:
        time.sleep(1.0)  # the workers' nodes meet on Redis
        wait_idle(workers.cpu_seconds, "the workers")
        rss_before = workers.rss()
        try:
            opened, reports, sent, cpu = _run(workers, plan, broker)
        except BenchError as exc:
            kept = Path(tempfile.mkdtemp(prefix="corral-capacity-")) / "workers.log"
            kept.write_text(workers.log_text())
            raise BenchError(f"{exc}\nthe workers' log is kept in {kept}") from exc
        lines += _report(plan, workers, rss_before, opened, reports, sent, cpu, broker)
    return "\n".join(lines)


def _run(
    workers: Workers, plan: Plan, broker: psutil.Process | None
) -> tuple[float, list[dict[str, Any]], list[int], dict[str, float]]:
    """Open every subscriber, broadcast once, then the steady fan-out; what each client saw."""
    timeout = 120.0 + plan.steady * plan.interval
    start = time.monotonic()
    clients = _open_subscribers(workers.port, plan, timeout)
    try:
        publisher = Publisher(workers.port)
        try:
            _wait_members(publisher, plan.connections)
            opened = time.monotonic() - start
            cpu0 = (workers.cpu_seconds(), _cpu([broker] if broker else []))
            sent = [publisher.publish(0, PADDING)]
            # The broadcast to all is over once the workers are idle again (at most 60 s).
            wait_idle(workers.cpu_seconds, "the workers after the broadcast", 60.0, 0.1)
            for seq in range(1, 1 + plan.steady):
                time.sleep(plan.interval)
                sent.append(publisher.publish(seq, PADDING))
            reports = [json.loads(read_line(c, timeout + 60, "report")) for c in clients]
            cpu = {
                "server": workers.cpu_seconds() - cpu0[0],
                "client": sum(report["cpu"] for report in reports),
                "redis": _cpu([broker] if broker else []) - cpu0[1],
            }
        finally:
            publisher.close()
    finally:
        _stop(clients)
    return opened, reports, sent, cpu


def _wait_members(publisher: Publisher, count: int, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while (known := publisher.members()) < count:
        if time.monotonic() > deadline:
            raise BenchError(f"the group reached {known:,} members, never {count:,}")
        time.sleep(0.2)


def _report(
    plan: Plan,
    workers: Workers,
    rss_before: int,
    opened: float,
    reports: list[dict[str, Any]],
    sent: list[int],
    cpu: dict[str, float],
    broker: psutil.Process | None,
) -> list[str]:
    got = [sum(report["got_by_seq"][seq] for report in reports) for seq in range(len(sent))]
    last = [max(report["last_by_seq"][seq] for report in reports) for seq in range(len(sent))]
    to_last = [(last[seq] - sent[seq]) / 1e6 for seq in range(len(sent))]
    latencies = sorted(us for report in reports for us in report["latencies_us"])
    expected = plan.connections * len(sent)
    lost = expected - sum(got)
    rss = workers.rss()
    steady = range(1, len(sent))
    steady_rate = (
        sum(got[seq] for seq in steady) / ((max(last[1:]) - sent[1]) / 1e9) if plan.steady else 0
    )
    delivered = max(1, sum(got))
    redis_rss = broker.memory_info().rss if broker is not None else 0
    return [
        f"opened: {plan.connections:,} connections, every member known to the publisher's node "
        f"in {opened:.1f} s ({plan.connections / opened:,.0f}/s)",
        f"RSS of the {plan.workers} workers and their parent: {rss_before / 2**20:,.0f} MiB "
        f"before, {rss / 2**20:,.0f} MiB after: {(rss - rss_before) / plan.connections / 1024:.1f}"
        f" KiB per connection (Redis {redis_rss / 2**20:,.0f} MiB)",
        f"broadcast to all: {got[0]:,} of {plan.connections:,} delivered, publish to last "
        f"delivery {to_last[0]:,.0f} ms ({got[0] / to_last[0] * 1000:,.0f} deliveries/s)",
        f"steady fan-out: {plan.steady} messages {plan.interval:g} s apart, "
        f"{steady_rate:,.0f} deliveries/s; publish to last delivery median "
        f"{statistics.median(to_last[1:]) if plan.steady else 0:,.0f} ms, worst "
        f"{max(to_last[1:], default=0):,.0f} ms",
        f"every delivery: p50 {_percentile(latencies, 0.5) / 1000:,.1f} ms, p99 "
        f"{_percentile(latencies, 0.99) / 1000:,.1f} ms",
        f"CPU per delivery: server {1e6 * cpu['server'] / delivered:.2f} us, client "
        f"{1e6 * cpu['client'] / delivered:.2f} us, Redis {1e6 * cpu['redis'] / delivered:.2f} us",
        f"lost {lost:,} of {expected:,} (target 0: {'PASS' if lost == 0 else 'MISS'})",
    ]


def _percentile(values: list[int], fraction: float) -> float:
    if not values:
        return math.nan
    return float(values[min(len(values) - 1, int(fraction * len(values)))])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 connections, 2 workers")
    parser.add_argument("--connections", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--steady", type=int, default=5, help="messages after the broadcast")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between them")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    parser.add_argument("--serve-option", action="append", default=[], help="for corral serve")
    args = parser.parse_args(argv)
    options = tuple(args.serve_option)
    if args.quick:
        plan = Plan(2_000, 2, 3, 0.1, options)
    else:
        plan = Plan(args.connections, args.workers, args.steady, args.interval, options)
    try:
        print(measure(plan, args.redis))
    except BenchError as exc:
        print(f"cluster_capacity: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
