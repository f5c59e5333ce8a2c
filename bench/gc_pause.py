"""Pauses under churn: a well-behaved client's echo latency while 9,000 of 10,000 connections
close at once (corral, and websockets on asyncio in the same run).

For each server (a fresh process): two ``load_client.py hold`` processes open 9,000 and 1,000
idle connections (each upgraded, echoing one message; from 127.0.0.2 and 127.0.0.3), then a
``load_client.py probe`` process connects and echoes one 32-byte text message every
``--interval`` s, noting each round trip's latency. After a second of that, the 9,000 all send
a close frame at once and wait until the server has closed each; the probe goes on for two
more seconds and reports. The table gives the probe's p50/p99/max latency over the whole
window, the round trips in it, and how long the 9,000 closes took. A stall shows as one slow
round trip (and fewer samples during it): read max beside p99.

Every close must complete and the 1,000 others must still be open at the end, or the run
fails (exit status 1). The target (corral's p99 under 50 ms) is only reported.

Run: ``python bench/gc_pause.py [--quick] [--connections N] [--closing K]``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import bench_parser, print_report, raise_nofile, run_clients, run_server  # noqa: E402
from wsclient import BenchError  # noqa: E402

TARGET_P99_MS = 50.0
"""Issue 9: corral's well-behaved client sees p99 round trips under 50 ms through the churn."""
SERVERS = ("corral", "websockets")
BEFORE, AFTER = 1.0, 2.0
"""Seconds the probe runs before the closes start and after they have all completed."""


@attrs.frozen
class Churn:
    """One server's run: the probe's latencies and what the closing took."""

    variant: str
    latencies: tuple[float, ...]
    closed: int
    closing: int
    close_seconds: float

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def churn(variant: str, connections: int, closing: int, interval: float) -> Churn:
    """Open ``connections``, probe, close ``closing`` of them at once, probe on."""
    limits = {"nofile": connections + 1024, "max_connections": connections + 100}
    shares = [
        ["--count", str(closing), "--source", "127.0.0.2"],
        ["--count", str(connections - closing), "--source", "127.0.0.3"],
    ]
    with (
        run_server(variant, **limits) as server,
        run_clients("hold", server.port, shares) as (closers, stayers),
    ):
        for holder in (closers, stayers):
            ready = holder.event("ready", 120.0 + connections / 20)
            if ready["failed"]:
                raise BenchError(f"{variant}: {ready['failed']:,} connections not upgraded")
        server.wait_idle()
        with run_clients("probe", server.port, [["--interval", str(interval)]]) as (probe,):
            probe.event("ready", 30.0)
            time.sleep(BEFORE)
            closers.send("close")
            closed = closers.event("closed", 120.0)
            time.sleep(AFTER)
            probe.send("stop")
            latencies = probe.event("latencies", 30.0)["seconds"]
        stayers.send("check")
        alive = stayers.event("alive", 60.0)["alive"]
    if closed["closed"] != closing or alive != connections - closing:
        raise BenchError(
            f"{variant}: {closed['closed']:,} of {closing:,} closes completed, "
            f"{alive:,} of {connections - closing:,} others still open"
        )
    return Churn(variant, tuple(latencies), closed["closed"], closing, closed["seconds"])


def report(runs: list[Churn], connections: int, interval: float) -> str:
    """One line per server, then the target."""
    lines = [
        f"echo latency of one client (a round trip every {interval * 1000:g} ms) while "
        f"{runs[0].closing:,} of {connections:,} connections close at once",
        f"{'server':<11}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'round trips':>13}"
        f"{'closes':>9}{'closing s':>11}",
    ]
    for run in runs:
        lines.append(
            f"{run.variant:<11}{1000 * run.percentile(0.5):>8.1f}"
            f"{1000 * run.percentile(0.99):>8.1f}{1000 * max(run.latencies):>8.1f}"
            f"{len(run.latencies):>13,}{run.closed:>9,}{run.close_seconds:>11.2f}"
        )
    corral = next(run for run in runs if run.variant == "corral")
    p99 = 1000 * corral.percentile(0.99)
    verdict = "PASS" if p99 < TARGET_P99_MS else "MISS"
    median = 1000 * corral.percentile(0.5)
    lines.append(
        f"corral p99 {p99:.1f} ms (p50 {median:.1f}) target < {TARGET_P99_MS:g} ms {verdict}; "
        "every close completed, every other connection still open"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the churn against each server, print the latencies; 0 unless something broke."""
    parser = bench_parser(__doc__, "1,000 connections, 900 closing", "10,000")
    parser.add_argument("--closing", type=int, help="of which close at once (default 90%%)")
    parser.add_argument("--interval", type=float, default=0.005, help="seconds between echoes")
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS))
    args = parser.parse_args(argv)
    if "corral" not in args.servers:
        parser.error("corral must be among --servers")
    connections = args.connections or (1_000 if args.quick else 10_000)
    closing = args.closing or connections * 9 // 10
    raise_nofile(connections + 1024)

    def measure() -> str:
        runs = [churn(v, connections, closing, args.interval) for v in args.servers]
        return report(runs, connections, args.interval)

    return print_report("gc_pause", measure)


if __name__ == "__main__":
    sys.exit(main())
