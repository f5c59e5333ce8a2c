"""Memory per idle WebSocket connection, and connections opened per second: corral's echo
example against websockets (asyncio) and a bare trio-websocket echo, all in the same run.

For each server (a fresh process every time, order rotating when ``--rounds`` > 1): a
``load_client.py hold`` process opens a few hundred connections to warm the server up
(imports, caches, allocator arenas) and closes them; the server collects garbage and its RSS
is read; then another opens N connections in batches of 250 (each upgraded, then echoing one
32-byte message, so every task and buffer of a live connection exists), holds them idle, and
the RSS is read again after a collection. Memory per connection is the RSS growth over N
(kernel socket buffers are not in a process's RSS: this is the server's own cost).

The same opening gives the connection rate: N over the time the batches' handshakes took
(connect, request, 101), with the server's CPU per connection (handshake, one echo, one ping)
and the client's for the handshakes beside it. corral closes a connection after 60 s
without data: the holder pings every connection every 20 s, and every connection must still
be open when the RSS has been read, or the run fails.

Run: ``python bench/idle_memory.py [--quick] [--connections N] [--rounds R]``.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import VARIANTS, bench_parser, print_report, raise_nofile, run_clients, run_server  # noqa: E402
from wsclient import BenchError  # noqa: E402

TARGET_KB = 10.0
"""Issue 9: corral's echo server grows by at most this many KB per idle connection."""
TARGET_OPENS = 1.2
"""Issue 9: corral opens connections at least this many times as fast as websockets."""
BASELINE = "websockets"
WARMUP_CONNECTIONS = 200


@attrs.frozen
class Reading:
    """One server's memory before and after N idle connections, and what opening them took."""

    variant: str
    connections: int
    baseline: int
    loaded: int
    open_seconds: float
    """Time the handshakes took, all batches together."""
    server_cpu: float
    client_cpu: float
    server_fds: int

    @property
    def per_connection(self) -> float:
        """Bytes of RSS growth per connection."""
        return (self.loaded - self.baseline) / self.connections

    @property
    def opens_per_second(self) -> float:
        return self.connections / self.open_seconds


def measure_one(variant: str, connections: int) -> Reading:
    """Start ``variant`` fresh, warm it up, and read its RSS before and after ``connections``."""
    limits = {"nofile": connections + 1024, "max_connections": connections + 100}
    opening = 120.0 + connections / 20  # at worst 20 connections a second
    with run_server(variant, **limits) as server:
        idle_fds = server.open_files()
        with run_clients("hold", server.port, [["--count", str(WARMUP_CONNECTIONS)]]) as warm:
            warm[0].event("ready", opening)
        server.wait_open_files(idle_fds)  # the warm-up connections are gone, not just closing
        baseline = server.settled_rss()
        cpu = server.cpu_seconds()
        with run_clients("hold", server.port, [["--count", str(connections)]]) as (holder,):
            opened = holder.event("ready", opening)
            server_cpu = server.cpu_seconds() - cpu
            if opened["opened"] != connections:
                raise BenchError(f"{variant}: {opened['failed']} of {connections} not upgraded")
            loaded = server.settled_rss()
            fds = server.open_files()
            holder.send("check")
            alive = holder.event("alive", 60.0)["alive"]
            if alive != connections:
                raise BenchError(
                    f"{variant}: only {alive} of {connections} connections still open when "
                    "the RSS was read"
                )
    return Reading(
        variant, connections, baseline, loaded, opened["seconds"], server_cpu, opened["cpu"], fds
    )


def measure(connections: int, rounds: int) -> list[Reading]:
    """Every server ``rounds`` times, the order rotating."""
    readings = []
    for round_ in range(rounds):
        shift = round_ % len(VARIANTS)
        for variant in VARIANTS[shift:] + VARIANTS[:shift]:
            readings.append(measure_one(variant, connections))
    return readings


def _median(readings: list[Reading], variant: str, figure: str) -> float:
    return statistics.median(getattr(r, figure) for r in readings if r.variant == variant)


def report(readings: list[Reading], connections: int, rounds: int) -> str:
    """One line per server (medians over the rounds), then the targets."""
    mib = 2**20
    lines = [
        f"idle connections: {connections:,} per server, each upgraded and echoed once; "
        f"RSS after gc.collect(), {rounds} round(s), medians;",
        "opens/s: connections over the handshakes' time (batches of 250); CPU per connection "
        "opened (server: handshake, one echo, one ping; client: handshakes)",
        f"{'server':<11}{'baseline MiB':>13}{'loaded MiB':>11}{'KB/conn':>9}{'(rounds)':>12}"
        f"{'opens/s':>9}{'server us/open':>16}{'client us/open':>16}{'fds':>7}",
    ]
    for variant in VARIANTS:
        mine = [r for r in readings if r.variant == variant]
        kb = [r.per_connection / 1000 for r in mine]
        lines.append(
            f"{variant:<11}{_median(readings, variant, 'baseline') / mib:>13.1f}"
            f"{_median(readings, variant, 'loaded') / mib:>11.1f}{statistics.median(kb):>9.1f}"
            f"{f'{min(kb):.1f}-{max(kb):.1f}':>12}"
            f"{_median(readings, variant, 'opens_per_second'):>9,.0f}"
            f"{1e6 * _median(readings, variant, 'server_cpu') / connections:>16.0f}"
            f"{1e6 * _median(readings, variant, 'client_cpu') / connections:>16.0f}"
            f"{max(r.server_fds for r in mine):>7,}"
        )
    kb = _median(readings, "corral", "per_connection") / 1000
    memory = kb * 1000 / _median(readings, BASELINE, "per_connection")
    opens = _median(readings, "corral", "opens_per_second") / _median(
        readings, BASELINE, "opens_per_second"
    )
    lines.append(
        f"corral memory per idle connection: {kb:.1f} KB target <= {TARGET_KB:g} KB "
        f"{'PASS' if round(kb, 1) <= TARGET_KB else 'MISS'}; {memory:.2f}x websockets', "
        f"{kb * 1000 / _median(readings, 'bare', 'per_connection'):.2f}x bare's"
    )
    lines.append(
        f"corral/websockets opens/s: {opens:.2f}x target >= {TARGET_OPENS:.1f}x "
        f"{'PASS' if round(opens, 2) >= TARGET_OPENS else 'MISS'}"
    )
    lines.append(f"all {connections:,} connections open at every reading")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse the sizes, measure every server, print the table; 0 unless something broke."""
    parser = bench_parser(__doc__, "1,000 connections", "10,000")
    parser.add_argument("--rounds", type=int, default=1, help="readings per server (default 1)")
    args = parser.parse_args(argv)
    connections = args.connections or (1_000 if args.quick else 10_000)
    limit = raise_nofile(connections + 1024)
    if limit < connections + 64:
        print(
            f"idle_memory: open-files limit {limit} is too low for {connections:,}", file=sys.stderr
        )
        return 1
    return print_report(
        "idle_memory", lambda: report(measure(connections, args.rounds), connections, args.rounds)
    )


if __name__ == "__main__":
    sys.exit(main())
