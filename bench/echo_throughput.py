"""Echo round trips per second: corral's echo example against websockets (asyncio) and bare
trio-websocket, all measured in the same run.

The three servers run for the whole benchmark, each in its own process on 127.0.0.1
(``common.py``). For each connection count (1 and 50), every round has ``load_client.py echo``
processes (one per 25 connections) open that many connections to one server, warm up, then
count round trips for a fixed time; the other servers take their turn right after, and the
order rotates from round to round. Each connection keeps exactly one 32-byte text message in
flight: send, wait for the echo, check it byte for byte, send again.

Beside each rate the table gives the server's CPU per round trip (psutil, on the server
process) and the client's own (all its processes): the client's must stay well under every
server's, or the figure measures the client. A wrong or missing echo is a crash (exit status
1); a missed target is only reported.

Run: ``python bench/echo_throughput.py [--quick] [--rounds R] [--seconds S] [--connections N..]``.

``--observability`` compares corral with itself instead (issue 12): metrics and the watchdog
off (in two identical servers, whose ratio is the run's noise floor), the watchdog alone (the
default), both with ``/metrics`` scraped every half second during each measured round, and all
that plus the dashboard with a page open (a client of its live feed taking every update),
interleaved the same way.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    OBSERVED_CONTROL,
    OBSERVED_VARIANTS,
    VARIANTS,
    ServerProcess,
    print_report,
    run_clients,
    run_server,
)
from load_client import PAYLOAD  # noqa: E402
from websockets.sync.client import connect  # noqa: E402
from wsclient import BenchError  # noqa: E402

TARGET = 1.0
"""Issue 9: corral's round trips per second at least websockets-asyncio's."""
BASELINE = "websockets"
CLIENT_SHARE = 0.5
"""The client's CPU per round trip must stay under this share of every server's."""

MESSAGE_BYTES = len(PAYLOAD)
CONNECTION_COUNTS = (1, 50)
OBSERVED_TARGET = 0.97
"""Issue 12: metrics or the watchdog on cost less than 3% of the round trips."""
SCRAPE_EVERY = 0.5
"""Seconds between two scrapes of ``/metrics`` while a corral-metrics round runs."""
SCRAPED = ("corral-metrics", "corral-dashboard")


@attrs.frozen
class Sizes:
    """How long and how many times each round runs, and over how many client processes."""

    warmup: float
    seconds: float
    rounds: int
    client_processes: int | None = None
    """None: one process per 25 connections (at least one)."""

    def processes(self, connections: int) -> int:
        wanted = self.client_processes or max(1, connections // 25)
        return min(wanted, connections)


FULL = Sizes(warmup=0.3, seconds=2.0, rounds=7)
QUICK = Sizes(warmup=0.1, seconds=0.3, rounds=1)


@attrs.frozen
class Sample:
    """One round against one server: round trips counted, over how long, at what CPU cost."""

    trips: int
    wall: float
    server_cpu: float
    client_cpu: float

    @property
    def rate(self) -> float:
        return self.trips / self.wall

    @property
    def server_us(self) -> float:
        """Server CPU microseconds per round trip."""
        return 1e6 * self.server_cpu / self.trips

    @property
    def client_us(self) -> float:
        """Client CPU microseconds per round trip (all its processes)."""
        return 1e6 * self.client_cpu / self.trips


def measure_round(server: ServerProcess, connections: int, sizes: Sizes) -> Sample:
    """One round: client processes open ``connections`` in all, warm up, then count."""
    processes = sizes.processes(connections)
    shares = [connections // processes + (i < connections % processes) for i in range(processes)]
    timing = ["--warmup", str(sizes.warmup), "--seconds", str(sizes.seconds)]
    arguments = [["--connections", str(share), *timing] for share in shares]
    with (
        run_clients("echo", server.port, arguments) as clients,
        _scraped(server),
        _dashboard_open(server),
    ):
        for client in clients:
            client.event("ready", 60.0)
        for client in clients:
            client.send("go")
        time.sleep(sizes.warmup)
        cpu0 = server.cpu_seconds()
        done = [client.event("done", sizes.warmup + sizes.seconds + 30.0) for client in clients]
        server_cpu = server.cpu_seconds() - cpu0
    trips = sum(int(event["trips"]) for event in done)
    if trips == 0:
        raise BenchError(f"{server.variant}: no echo at all in {sizes.seconds:g} s")
    return Sample(
        trips=trips,
        wall=max(float(event["wall"]) for event in done),
        server_cpu=server_cpu,
        client_cpu=sum(float(event["cpu"]) for event in done),
    )


@contextmanager
def _scraped(server: ServerProcess) -> Iterator[None]:
    """Fetch a corral-metrics server's ``/metrics`` every ``SCRAPE_EVERY`` s meanwhile."""
    if server.variant not in SCRAPED:
        yield
        return
    stop = threading.Event()
    failures: list[BaseException] = []

    def scrape() -> None:
        url = f"http://127.0.0.1:{server.port}/metrics"
        while not stop.wait(SCRAPE_EVERY):
            try:
                with urllib.request.urlopen(url, timeout=10) as answer:
                    if b"corral_frames_received_total" not in answer.read():
                        raise BenchError(f"{url} has no corral_frames_received_total")
            except Exception as exc:  # reported once the round is over
                failures.append(exc)
                return

    scraper = threading.Thread(target=scrape, daemon=True)
    scraper.start()
    try:
        yield
    finally:
        stop.set()
        scraper.join()
    if failures:
        raise BenchError(f"scraping /metrics failed: {failures[0]!r}")


@contextmanager
def _dashboard_open(server: ServerProcess) -> Iterator[None]:
    """For corral-dashboard: what an open page costs the server, its live feed read meanwhile
    (a thread takes every update; no browser, which would compete for the CPU)."""
    if server.variant != "corral-dashboard":
        yield
        return
    with connect(f"ws://127.0.0.1:{server.port}/corral/live") as feed:
        if b'"tree"' not in feed.recv(timeout=10, decode=False):
            raise BenchError("the dashboard feed's first update has no tree")

        def read() -> None:
            for _ in feed:
                pass

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            yield
        finally:
            feed.close()
            reader.join()


@attrs.frozen
class Result:
    """Every round's samples for one connection count, per server."""

    connections: int
    samples: dict[str, tuple[Sample, ...]]

    def rate(self, variant: str) -> float:
        return statistics.median(s.rate for s in self.samples[variant])

    def server_us(self, variant: str) -> float:
        return statistics.median(s.server_us for s in self.samples[variant])

    def client_us(self, variant: str) -> float:
        return statistics.median(s.client_us for s in self.samples[variant])

    def cpu_share(self, variant: str, side: str) -> float:
        """Median CPU use of the server or client side, as a fraction of one core."""
        return statistics.median(getattr(s, f"{side}_cpu") / s.wall for s in self.samples[variant])

    def ratio(self, variant: str, baseline: str) -> float:
        return self.rate(variant) / self.rate(baseline)

    def round_ratios(self, variant: str, baseline: str) -> tuple[float, ...]:
        pairs = zip(self.samples[variant], self.samples[baseline], strict=True)
        return tuple(mine.rate / theirs.rate for mine, theirs in pairs)


def measure(
    counts: tuple[int, ...], sizes: Sizes, variants: tuple[str, ...] = VARIANTS
) -> list[Result]:
    """Run every server; interleave their rounds, rotating which one goes first."""
    samples: dict[tuple[str, int], list[Sample]] = {(v, n): [] for v in variants for n in counts}
    with ExitStack() as stack:
        servers = {v: stack.enter_context(run_server(v)) for v in variants}
        for n in counts:  # warm-up, not counted: imports, caches, first allocations
            for server in servers.values():
                measure_round(server, n, attrs.evolve(sizes, seconds=sizes.warmup))
        for round_ in range(sizes.rounds):
            shift = round_ % len(variants)
            order = variants[shift:] + variants[:shift]
            for n in counts:
                for variant in order:
                    samples[variant, n].append(measure_round(servers[variant], n, sizes))
    return [Result(n, {v: tuple(samples[v, n]) for v in variants}) for n in counts]


def observability_report(results: list[Result], sizes: Sizes) -> str:
    """corral with metrics and the watchdog off, the watchdog on, both on: rates and ratios."""
    lines = [
        f"echo: {MESSAGE_BYTES}-byte text messages, one in flight per connection, "
        f"{sizes.rounds} round(s) of {sizes.seconds:g} s interleaved, medians; "
        f"corral-metrics scraped every {SCRAPE_EVERY:g} s",
        f"{'conns':<6}{'server':<17}{'rt/s':>9}{'server us/rt':>14}{'server CPU':>12}",
    ]
    for r in results:
        for variant in OBSERVED_VARIANTS:
            lines.append(
                f"{r.connections:<6}{variant:<17}{r.rate(variant):>9,.0f}"
                f"{r.server_us(variant):>14.1f}{r.cpu_share(variant, 'server'):>12.0%}"
            )
    for r in results:
        for variant in OBSERVED_VARIANTS[1:]:
            ratio, spread = r.ratio(variant, "corral-off"), r.round_ratios(variant, "corral-off")
            cpu = r.server_us(variant) / r.server_us("corral-off")
            if variant == OBSERVED_CONTROL:
                target, note = "", ": the same server twice, this run's noise floor"
            else:
                ok = round(ratio, 3) >= OBSERVED_TARGET
                target, note = f" target >= {OBSERVED_TARGET:.2f}x {_verdict(ok)}", ""
            lines.append(
                f"{r.connections} conns: {variant}/corral-off rt/s {ratio:.3f}x "
                f"({min(spread):.2f}-{max(spread):.2f}){target}; server CPU/rt {cpu:.3f}x{note}"
            )
    return "\n".join(lines)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report(results: list[Result], sizes: Sizes) -> str:
    """One row per server and connection count, then the ratios and targets per count."""
    lines = [
        f"echo: {MESSAGE_BYTES}-byte text messages, one in flight per connection, "
        f"{sizes.rounds} round(s) of {sizes.seconds:g} s interleaved, medians;",
        "CPU: server from psutil, client = all load_client processes (% of one core, us/trip)",
        f"{'conns':<6}{'server':<11}{'rt/s':>9}{'server us/rt':>14}{'client us/rt':>14}"
        f"{'server CPU':>12}{'client CPU':>12}{'clients':>9}",
    ]
    trips = 0
    for r in results:
        for variant in VARIANTS:
            trips += sum(s.trips for s in r.samples[variant])
            lines.append(
                f"{r.connections:<6}{variant:<11}{r.rate(variant):>9,.0f}"
                f"{r.server_us(variant):>14.1f}{r.client_us(variant):>14.1f}"
                f"{r.cpu_share(variant, 'server'):>12.0%}{r.cpu_share(variant, 'client'):>12.0%}"
                f"{sizes.processes(r.connections):>9}"
            )
    for r in results:
        ratio, spread = r.ratio("corral", BASELINE), r.round_ratios("corral", BASELINE)
        cpu = r.server_us("corral") / r.server_us(BASELINE)
        lines.append(
            f"{r.connections} conns: corral/websockets rt/s {ratio:.2f}x "
            f"({min(spread):.2f}-{max(spread):.2f}) target >= {TARGET:.1f}x "
            f"{_verdict(round(ratio, 2) >= TARGET)}; server CPU/rt {cpu:.2f}x websockets' "
            f"target <= 1.0x {_verdict(round(cpu, 2) <= 1.0)}; corral/bare rt/s "
            f"{r.ratio('corral', 'bare'):.2f}x"
        )
    share = max(r.client_us(v) / r.server_us(v) for r in results for v in VARIANTS)
    lines.append(
        f"client CPU/rt at most {share:.2f}x the server's (must stay under "
        f"{CLIENT_SHARE:.1f}x) {_verdict(share < CLIENT_SHARE)}"
    )
    lines.append(f"echoed: {trips:,} round trips checked byte for byte; 0 wrong or lost")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse the sizes, run the rounds, print the table; 0 unless something broke."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short rounds, for a smoke run")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 7, quick 1)")
    parser.add_argument(
        "--client-processes", type=int, help="load processes (default: one per 25 connections)"
    )
    parser.add_argument("--seconds", type=float, help="measured seconds per round (default 2)")
    parser.add_argument(
        "--connections",
        type=int,
        nargs="+",
        default=list(CONNECTION_COUNTS),
        help="connection counts to run (default 1 50)",
    )
    parser.add_argument(
        "--observability",
        action="store_true",
        help="compare corral with metrics and watchdog off / watchdog on / both on",
    )
    args = parser.parse_args(argv)
    preset = QUICK if args.quick else FULL
    sizes = attrs.evolve(
        preset,
        rounds=args.rounds or preset.rounds,
        seconds=args.seconds or preset.seconds,
        client_processes=args.client_processes,
    )
    counts = tuple(args.connections)
    if args.observability:
        return print_report(
            "echo_throughput",
            lambda: observability_report(measure(counts, sizes, OBSERVED_VARIANTS), sizes),
        )
    return print_report("echo_throughput", lambda: report(measure(counts, sizes), sizes))


if __name__ == "__main__":
    sys.exit(main())
