"""Idle connections up to the per-process file limit: how many one corral process holds, and
at what cost in memory and CPU per connection, projected to 100,000 per process.

One corral echo server (``examples.echo:app`` as ``corral serve`` runs it) gets the largest
open-files limit this machine allows (``ulimit -n``: 20,000 here, not raisable) and room for
that many connections. Client processes (``load_client.py hold``, one per 5,000 connections,
each from its own source address 127.0.0.2, 127.0.0.3... so the loopback's ephemeral ports
are never the limit) open together as many connections as the server has descriptors left
(its limit minus those it holds idle, minus a small margin), each upgraded and echoing one
32-byte message. Then, with all of them idle:

- RSS: before (after warm-up and ``gc.collect()``) and after, growth per connection;
- CPU: the server's CPU seconds while they were being opened, per connection, and its CPU use
  while they sit idle for ``--idle-seconds`` (at most 15; the holders ping every connection
  just before, and every 20 s, as corral closes connections after 60 s without data, so no
  ping falls inside the window);
- the projection to 100,000 connections in one process from those figures (and the limit
  such a process would need).

Every connection must be upgraded and still open at the end, or the run fails (exit 1).

Run: ``python bench/max_idle.py [--quick] [--connections N] [--idle-seconds S]``.
"""

from __future__ import annotations

import math
import resource
import sys
import time
from pathlib import Path

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import bench_parser, print_report, run_clients, run_server  # noqa: E402
from wsclient import BenchError  # noqa: E402

PER_CLIENT = 5_000
"""Connections per client process (each one's own source address)."""
MARGIN = 32
"""Descriptors left free in the server beyond those it holds idle (log files, accept...)."""
PROJECTED = 100_000
WARMUP_CONNECTIONS = 200


@attrs.frozen
class Holding:
    """What holding ``connections`` idle connections cost one server process."""

    limit: int
    own_fds: int
    """Descriptors the server holds with no connection."""
    connections: int
    baseline_rss: int
    loaded_rss: int
    open_seconds: float
    open_cpu: float
    idle_seconds: float
    idle_cpu: float
    client_cpu: float


def _sources(count: int) -> list[list[str]]:
    """Holder arguments: ``count`` connections over processes of at most ``PER_CLIENT``."""
    processes = max(1, math.ceil(count / PER_CLIENT))
    shares = [count // processes + (i < count % processes) for i in range(processes)]
    return [["--count", str(n), "--source", f"127.0.0.{2 + i}"] for i, n in enumerate(shares)]


def hold(wanted: int | None, idle_seconds: float) -> Holding:
    """Fill one corral process with idle connections and read what they cost."""
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    with run_server("corral", nofile=limit, max_connections=limit) as server:
        idle_fds = server.open_files()
        with run_clients("hold", server.port, [["--count", str(WARMUP_CONNECTIONS)]]) as warm:
            warm[0].event("ready", 60.0)
        server.wait_open_files(idle_fds)
        count = wanted or limit - idle_fds - MARGIN
        if idle_fds + count > limit:
            raise BenchError(f"{count:,} connections do not fit in {limit:,} descriptors")
        baseline = server.settled_rss()
        cpu, start = server.cpu_seconds(), time.monotonic()
        with run_clients("hold", server.port, _sources(count)) as holders:
            ready = [holder.event("ready", 120.0 + count / 20) for holder in holders]
            open_seconds, open_cpu = time.monotonic() - start, server.cpu_seconds() - cpu
            failed = sum(event["failed"] for event in ready)
            if failed:
                raise BenchError(f"{failed:,} of {count:,} connections were not upgraded")
            for holder in holders:  # no keepalive ping falls in the idle window
                holder.send("ping")
            for holder in holders:
                holder.event("pinged", 120.0)
            server.wait_idle()
            cpu, start = server.cpu_seconds(), time.monotonic()
            time.sleep(idle_seconds)
            idle_cpu, idle_wall = server.cpu_seconds() - cpu, time.monotonic() - start
            loaded = server.settled_rss()
            for holder in holders:
                holder.send("check")
            alive = sum(holder.event("alive", 60.0)["alive"] for holder in holders)
            if alive != count:
                raise BenchError(f"only {alive:,} of {count:,} connections still open")
    return Holding(
        limit=limit,
        own_fds=idle_fds,
        connections=count,
        baseline_rss=baseline,
        loaded_rss=loaded,
        open_seconds=open_seconds,
        open_cpu=open_cpu,
        idle_seconds=idle_wall,
        idle_cpu=idle_cpu,
        client_cpu=sum(event["cpu"] for event in ready),
    )


def report(held: Holding) -> str:
    """The figures, per connection, and the projection to ``PROJECTED`` connections."""
    mib, n = 2**20, held.connections
    idle_share = held.idle_cpu / held.idle_seconds
    rss_per_connection = (held.loaded_rss - held.baseline_rss) / n
    projected_rss = held.baseline_rss + PROJECTED * rss_per_connection
    lines = [
        f"idle connections in one corral process: {n:,} held (open-files limit {held.limit:,}), "
        f"{len(_sources(n))} client process(es) from 127.0.0.2 up",
        f"RSS: {held.baseline_rss / mib:.1f} MiB before, {held.loaded_rss / mib:.1f} MiB with "
        f"them: {rss_per_connection / 1000:.1f} KB per connection",
        f"opening: {held.open_seconds:.1f} s ({n / held.open_seconds:,.0f}/s), server CPU "
        f"{held.open_cpu:.1f} s: {1e6 * held.open_cpu / n:.0f} us per connection (client "
        f"handshakes {1e6 * held.client_cpu / n:.0f} us)",
        f"idle: server CPU {idle_share:.1%} of a core over {held.idle_seconds:.1f} s: "
        f"{1e6 * idle_share / n:.2f} us per connection per second",
        f"projection to {PROJECTED:,} per process: RSS {projected_rss / mib:,.0f} MiB, "
        f"opening CPU {PROJECTED * held.open_cpu / n:.0f} s, idle CPU "
        f"{PROJECTED * idle_share / n:.1%} of a core; needs an open-files limit of "
        f"{PROJECTED + held.own_fds + MARGIN:,}",
        f"all {n:,} connections upgraded and still open at the end",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Fill one corral process, print the figures; 0 unless something broke."""
    parser = bench_parser(__doc__, "2,000 connections", "as many as the limit allows")
    parser.add_argument(
        "--idle-seconds", type=float, help="idle CPU window (default 10, quick 2, at most 15)"
    )
    args = parser.parse_args(argv)
    wanted = args.connections or (2_000 if args.quick else None)
    idle_seconds = min(15.0, args.idle_seconds or (2.0 if args.quick else 10.0))
    return print_report("max_idle", lambda: report(hold(wanted, idle_seconds)))


if __name__ == "__main__":
    sys.exit(main())
