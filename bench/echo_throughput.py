"""Echo round trips per second: corral's echo example against a bare trio-websocket echo.

Both servers run for the whole benchmark, each in its own process on 127.0.0.1; this process
is the load generator. For each connection count (1 and 50), every round opens that many
connections to one server, lets them warm up, then counts round trips for a fixed time (or a
fixed count, whichever comes first) and closes them; the other server takes its turn right
after, and the order alternates from round to round. Each connection keeps exactly one
32-byte binary message in flight: send, wait for the echo, check it byte for byte, send again.

The client is plain sockets and epoll with pre-encoded frames (see ``common``), a few
microseconds per round trip: the server is meant to be the bottleneck, and the table shows
both processes' CPU use so that you can check it (a server near 100% is saturated; with
one connection both sides mostly wait for each other). A wrong or missing echo is a crash
(exit status 1); a missed target is only reported.

Run: ``python bench/echo_throughput.py [--quick] [--rounds R] [--seconds S]``.
"""

from __future__ import annotations

import argparse
import select
import socket
import statistics
import sys
import time
from pathlib import Path

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    BenchError,
    ServerProcess,
    abort,
    client_frame,
    open_websocket,
    run_server,
    server_frame,
)

TARGET = 0.9
"""Issue target: corral's round trips per second at least this fraction of the bare echo's."""

MESSAGE_BYTES = 32
CONNECTION_COUNTS = (1, 50)


@attrs.frozen
class Sizes:
    """How long and how many times each round runs."""

    warmup: float
    seconds: float
    max_trips: int
    rounds: int


FULL = Sizes(warmup=0.3, seconds=2.0, max_trips=2_000_000, rounds=7)
QUICK = Sizes(warmup=0.05, seconds=0.3, max_trips=200_000, rounds=2)


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


class _Load:
    """``connections`` upgraded sockets, each with one echo in flight, driven by epoll."""

    def __init__(self, server: ServerProcess, connections: int) -> None:
        payload = bytes(range(65, 65 + MESSAGE_BYTES))
        self.frame = client_frame(payload)
        self.reply = server_frame(payload)
        self.sockets: dict[int, socket.socket] = {}
        self.partial: dict[int, bytes] = {}
        self.trips = 0
        self.poller = select.epoll()
        try:
            for _ in range(connections):
                sock = open_websocket(server.port)
                sock.setblocking(False)
                self.sockets[sock.fileno()] = sock
                self.partial[sock.fileno()] = b""
                self.poller.register(sock.fileno(), select.EPOLLIN)
        except BaseException:
            self.close()
            raise

    def run_until(self, deadline: float, max_trips: int) -> None:
        """Echo until the clock reaches ``deadline`` or ``max_trips`` round trips are done."""
        sockets, partial, poll = self.sockets, self.partial, self.poller.poll
        frame, reply, size = self.frame, self.reply, len(self.reply)
        clock = time.perf_counter
        while clock() < deadline and self.trips < max_trips:
            for fd, _ in poll(0.1):
                data = sockets[fd].recv(4096)
                if not data:
                    raise BenchError("the server closed a connection in the middle of a round")
                got = partial[fd] + data
                if len(got) < size:
                    partial[fd] = got
                    continue
                if got != reply:
                    raise BenchError(f"wrong echo: expected {reply!r}, got {got!r}")
                partial[fd] = b""
                self.trips += 1
                sockets[fd].send(frame)

    def start(self) -> None:
        """Put one message in flight on every connection."""
        for sock in self.sockets.values():
            sock.send(self.frame)

    def close(self) -> None:
        for sock in self.sockets.values():
            abort(sock)
        self.poller.close()


def measure_round(server: ServerProcess, connections: int, sizes: Sizes) -> Sample:
    """Warm up, then count round trips on ``connections`` connections for one round."""
    load = _Load(server, connections)
    try:
        load.start()
        load.run_until(time.perf_counter() + sizes.warmup, sizes.max_trips)
        trips0, cpu0, client0 = load.trips, server.cpu_seconds(), time.process_time()
        start = time.perf_counter()
        load.run_until(start + sizes.seconds, load.trips + sizes.max_trips)
        wall = time.perf_counter() - start
        if load.trips == trips0:
            raise BenchError(f"{server.variant}: no echo at all in {wall:.1f} s")
        return Sample(
            trips=load.trips - trips0,
            wall=wall,
            server_cpu=server.cpu_seconds() - cpu0,
            client_cpu=time.process_time() - client0,
        )
    finally:
        load.close()


@attrs.frozen
class Result:
    """Every round's samples for one connection count, both variants."""

    connections: int
    corral: tuple[Sample, ...]
    bare: tuple[Sample, ...]

    @property
    def ratio(self) -> float:
        return _median_rate(self.corral) / _median_rate(self.bare)

    @property
    def cpu_ratio(self) -> float:
        """The same ratio per server CPU-second: what a busy shared machine cannot skew."""
        return _median_cpu_per_trip(self.bare) / _median_cpu_per_trip(self.corral)

    @property
    def round_ratios(self) -> tuple[float, ...]:
        return tuple(c.rate / b.rate for c, b in zip(self.corral, self.bare, strict=True))


def _median_rate(samples: tuple[Sample, ...]) -> float:
    return statistics.median(s.rate for s in samples)


def _median_cpu(samples: tuple[Sample, ...], side: str) -> float:
    """Median CPU use of the server or client side, as a fraction of one core."""
    return statistics.median(getattr(s, f"{side}_cpu") / s.wall for s in samples)


def _median_cpu_per_trip(samples: tuple[Sample, ...]) -> float:
    """Median server CPU microseconds per round trip."""
    return statistics.median(1e6 * s.server_cpu / s.trips for s in samples)


def measure(counts: tuple[int, ...], sizes: Sizes) -> list[Result]:
    """Run both servers; interleave their rounds, alternating which one goes first."""
    samples: dict[tuple[str, int], list[Sample]] = {
        (v, n): [] for v in ("corral", "bare") for n in counts
    }
    with run_server("corral") as corral, run_server("bare") as bare:
        servers = {"corral": corral, "bare": bare}
        for n in counts:  # warm-up, not counted: imports, caches, first allocations
            for server in servers.values():
                measure_round(server, n, attrs.evolve(sizes, seconds=sizes.warmup))
        for round_ in range(sizes.rounds):
            order = ("bare", "corral") if round_ % 2 == 0 else ("corral", "bare")
            for n in counts:
                for variant in order:
                    samples[variant, n].append(measure_round(servers[variant], n, sizes))
    return [Result(n, tuple(samples["corral", n]), tuple(samples["bare", n])) for n in counts]


def report(results: list[Result], sizes: Sizes) -> str:
    """The results table: one line per connection count, with CPU use to judge saturation."""
    lines = [
        f"corral echo (examples.echo:app) vs bare trio-websocket echo: {MESSAGE_BYTES}-byte "
        "binary messages, one in flight per connection,",
        f"{sizes.rounds} rounds of {sizes.seconds:g} s interleaved, medians. CPU: % of one core "
        "(server: bare/corral, client: this process);",
        "per-CPU: corral/bare in round trips per server CPU-second (steadier on a busy machine)",
        f"{'connections':<11} {'bare rt/s':>9} {'corral rt/s':>11} {'corral/bare':>11} "
        f"{'(rounds)':>10} {'target':>6}  {'result':<6} {'per-CPU':>7} {'server CPU':>10} "
        f"{'us/trip':>8} {'client CPU':>10}",
    ]
    for r in results:
        spread = f"{min(r.round_ratios):.2f}-{max(r.round_ratios):.2f}"
        verdict = "PASS" if round(r.ratio, 2) >= TARGET else "MISS"  # judged as printed
        server_cpu = f"{_median_cpu(r.bare, 'server'):.0%}/{_median_cpu(r.corral, 'server'):.0%}"
        per_trip = f"{_median_cpu_per_trip(r.bare):.0f}/{_median_cpu_per_trip(r.corral):.0f}"
        client_cpu = f"{_median_cpu(r.bare + r.corral, 'client'):.0%}"
        lines.append(
            f"{r.connections:<11} {_median_rate(r.bare):>9,.0f} {_median_rate(r.corral):>11,.0f} "
            f"{r.ratio:>10.2f}x {spread:>10} {TARGET:>5.2f}x  {verdict:<6} "
            f"{r.cpu_ratio:>6.2f}x {server_cpu:>10} {per_trip:>8} {client_cpu:>10}"
        )
    trips = sum(s.trips for r in results for s in r.corral + r.bare)
    lines.append(f"echoed: {trips:,} round trips checked byte for byte; 0 wrong or lost")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse the sizes, run the rounds, print the table; 0 unless something broke."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short rounds, for a smoke run")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 7, quick 2)")
    parser.add_argument("--seconds", type=float, help="measured seconds per round (default 2)")
    parser.add_argument(
        "--connections",
        type=int,
        nargs="+",
        default=list(CONNECTION_COUNTS),
        help="connection counts to run (default 1 50)",
    )
    args = parser.parse_args(argv)
    preset = QUICK if args.quick else FULL
    sizes = attrs.evolve(
        preset, rounds=args.rounds or preset.rounds, seconds=args.seconds or preset.seconds
    )
    try:
        results = measure(tuple(args.connections), sizes)
    except BenchError as exc:
        print(f"echo_throughput: {exc}", file=sys.stderr)
        return 1
    print(report(results, sizes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
