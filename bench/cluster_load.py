"""Worker processes, measured with a client that is not the limit: echo and fan-out, 2 against 1.

``echo``: 200 connections to ``/echo`` of ``bench/cluster_app.py``, from ``load_client.py
echo`` processes (4 by default, each from its own 127.0.0.x source address), each connection
keeping ``--depth`` 32-byte messages in flight (32 by default), sleeping 1 ms between its
passes over the ready connections: it writes and reads many messages at a time, so a round
trip costs it a fraction of what it costs the server. ``corral serve
--workers 1`` and ``--workers 2`` run side by side and take turns round by round. Reported:
round trips per second (2 / 1, target >= 1.3x), server CPU per round trip, all of a server's
processes together (2 / 1, target <= 1.1x), and the client's CPU per round trip beside it.

``fanout``: 1,000 subscribers to ``/sub`` (group ``fan``) from ``fanout_clients.py`` processes
(one per 250 connections, each from its own 127.0.0.x, sleeping 1 ms between passes over its
ready connections so that a read takes several frames), spread over the workers by the kernel;
a publisher on ``/pub`` sends 20 stamped messages back to back once its node knows every
member. Both servers use Redis; with 2 workers the group spans 2 nodes, so each publish
crosses Redis to the other node. Reported: deliveries per second (2 / 1, target >= 0.8x),
publish-to-delivery latency p50/p99 (target p99 < 50 ms with 2 workers), lost (target 0), and
CPU per delivery of the servers, the client processes and Redis.

Traffic goes to 127.0.0.x only; every wait is bounded, every process started is stopped.

Run: ``python bench/cluster_load.py echo|fanout [--quick] [--rounds R]``.
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
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import free_port, raise_nofile, run_clients, wait_idle  # noqa: E402
from fanout import PADDING, Round, Sizes, read_line, start_clients, summarise  # noqa: E402
from fanout_clients import Publisher  # noqa: E402
from wsclient import BenchError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SOURCES = tuple(f"127.0.0.{n}" for n in range(2, 18))
"""Client source addresses: each client process connects from the next one."""
NAP = 0.001
"""Seconds each client process sleeps between passes over its ready connections, so that it
reads many frames per read: a fan-out delivery is noted up to 1 ms late, and an echo round
trip waits up to 1 ms more (with 32 in flight per connection the server always has work)."""
CLIENT_SHARE = 0.5
"""The client's CPU must stay under this share of the server's, or it is what is measured."""


# ---- servers ----------------------------------------------------------------------------


class Workers:
    """``corral serve bench.cluster_app:app --workers N`` in a subprocess."""

    def __init__(
        self,
        count: int,
        redis: str | None = None,
        *,
        max_connections: int = 5000,
        options: Sequence[str] = (),
    ) -> None:
        self.count = count
        self.port = free_port()
        self.command = [sys.executable, "-m", "server.run.cli", "serve", "bench.cluster_app:app"]
        self.command += ["--port", str(self.port), "--workers", str(count)]
        self.command += ["--log-level", "warning", "--max-connections", str(max_connections)]
        if redis is not None:
            self.command += ["--redis", redis, "--cluster-prefix", f"bench:{uuid.uuid4().hex}"]
        self.command += options  # more of corral serve's options
        self.log = tempfile.NamedTemporaryFile(prefix="corral-bench-", suffix=".log")
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        self.popen = subprocess.Popen(self.command, cwd=ROOT, stderr=self.log, stdout=self.log)
        deadline = time.monotonic() + timeout
        while len(self._listening_workers()) < self.count:
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"{self.count} workers did not start:\n{self.log_text()}")
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

    def log_text(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def processes(self) -> list[psutil.Process]:
        """The parent and every worker."""
        assert self.popen is not None
        parent = psutil.Process(self.popen.pid)
        return [parent, *parent.children(recursive=True)]

    def cpu_seconds(self) -> float:
        """User + system CPU of the parent and every worker so far."""
        return sum(_cpu(process) for process in self.processes())

    def rss(self) -> int:
        """Resident memory of the parent and every worker, in bytes."""
        return sum(process.memory_info().rss for process in self.processes())

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()  # every worker drains; the parent exits 0
            try:
                self.popen.wait(60)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.log.close()


@contextmanager
def running(count: int, redis: str | None = None, **options: Any) -> Iterator[Workers]:
    workers = Workers(count, redis, **options)
    try:
        workers.start()
        yield workers
    finally:
        workers.stop()


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def redis_process(url: str) -> psutil.Process | None:
    """The local ``redis-server`` listening on ``url``'s port, if this user may see it."""
    port = urlsplit(url).port or 6379
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
                return psutil.Process(conn.pid)
    except psutil.AccessDenied:
        pass
    return None


# ---- echo -------------------------------------------------------------------------------


@attrs.frozen
class EchoSample:
    """One echo round on one server."""

    rate: float
    server_us: float
    client_us: float


def echo_round(
    workers: Workers, connections: int, processes: int, depth: int, warmup: float, seconds: float
) -> EchoSample:
    """One round: ``processes`` clients share ``connections``, each from its own source."""
    share = math.ceil(connections / processes)
    arguments = [
        ["--connections", str(min(share, connections - i * share)), "--depth", str(depth)]
        + ["--source", SOURCES[i % len(SOURCES)], "--warmup", str(warmup)]
        + ["--seconds", str(seconds), "--path", "/echo", "--nap", str(NAP)]
        for i in range(processes)
        if connections - i * share > 0
    ]
    with run_clients("echo", workers.port, arguments) as clients:
        for client in clients:
            client.event("ready", 60.0)
        for client in clients:
            client.send("go")
        time.sleep(warmup)
        cpu0 = workers.cpu_seconds()
        done = [client.event("done", warmup + seconds + 30.0) for client in clients]
        cpu = workers.cpu_seconds() - cpu0
    trips = sum(d["trips"] for d in done)
    if trips == 0:
        raise BenchError("no echo in a whole round")
    wall = max(d["wall"] for d in done)
    return EchoSample(trips / wall, 1e6 * cpu / trips, 1e6 * sum(d["cpu"] for d in done) / trips)


def bench_echo(rounds: int, seconds: float, connections: int, processes: int, depth: int) -> str:
    samples: dict[int, list[EchoSample]] = {1: [], 2: []}
    with running(1) as one, running(2) as two:
        servers = {1: one, 2: two}
        for server in servers.values():  # warm-up, not counted
            echo_round(server, connections, processes, depth, 0.2, 0.3)
        for round_ in range(rounds):
            for count in (1, 2) if round_ % 2 == 0 else (2, 1):
                samples[count].append(
                    echo_round(servers[count], connections, processes, depth, 0.3, seconds)
                )
    rate = {n: statistics.median(s.rate for s in samples[n]) for n in samples}
    cpu = {n: statistics.median(s.server_us for s in samples[n]) for n in samples}
    client = {n: statistics.median(s.client_us for s in samples[n]) for n in samples}
    ratio, cpu_ratio = rate[2] / rate[1], cpu[2] / cpu[1]
    share = max(client[n] / cpu[n] if cpu[n] else math.inf for n in samples)
    lines = [
        f"echo, {connections} connections from {processes} client processes "
        f"({', '.join(SOURCES[:processes])}), 32-byte messages, {depth} in flight each; "
        f"{rounds} rounds of {seconds:g} s interleaved, medians; {_load()}",
        f"{'workers':<8} {'rt/s':>9} {'server CPU us/rt':>17} {'client CPU us/rt':>17}",
    ]
    for n in (1, 2):
        lines.append(f"{n:<8} {rate[n]:>9,.0f} {cpu[n]:>17.2f} {client[n]:>17.2f}")
    lines += [
        f"round trips/s 2/1: {ratio:.2f}x (target >= 1.3x: {_verdict(ratio >= 1.3)}); "
        f"CPU per round trip 2/1: {cpu_ratio:.2f}x (target <= 1.1x: {_verdict(cpu_ratio <= 1.1)})",
        f"client CPU at most {share:.2f}x the server's "
        f"(must stay under {CLIENT_SHARE}x: {_verdict(share < CLIENT_SHARE)})",
    ]
    return "\n".join(lines)


# ---- fan-out ----------------------------------------------------------------------------


@attrs.frozen
class FanoutSample:
    """One fan-out round on one server, with the CPU per delivery each side spent."""

    round: Round
    server_us: float
    client_us: float
    redis_us: float

    @classmethod
    def of(cls, result: Round, redis_cpu: float) -> FanoutSample:
        per = 1e6 / max(1, result.delivered)
        return cls(result, result.server_cpu * per, result.client_cpu * per, redis_cpu * per)


def fanout_round(
    workers: Workers, sizes: Sizes, redis: psutil.Process | None, variant: str
) -> FanoutSample:
    """Subscribe every client, wait until the publisher's node knows them all, publish."""
    wait_idle(workers.cpu_seconds, f"{workers.count} worker(s)")
    clients = start_clients(workers.port, sizes, SOURCES, NAP)
    try:
        for client in clients:
            if read_line(client, 120.0, "ready line").strip() != "ready":
                raise BenchError("a subscriber process did not get ready")
        publisher = Publisher(workers.port)
        try:
            _wait_members(publisher, sizes.connections)
            cpu0 = workers.cpu_seconds()
            redis0 = _cpu(redis) if redis is not None else math.nan
            first = publisher.publish(0, PADDING)
            for seq in range(1, sizes.messages):
                if sizes.interval:
                    time.sleep(sizes.interval)
                publisher.publish(seq, PADDING)
            reports = [
                json.loads(read_line(client, sizes.timeout + 30, "report")) for client in clients
            ]
            cpu = workers.cpu_seconds() - cpu0
            redis_cpu = _cpu(redis) - redis0 if redis is not None else math.nan
        finally:
            publisher.close()
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
            client.wait()
    return FanoutSample.of(summarise(variant, sizes, reports, first, cpu), redis_cpu)


def _wait_members(publisher: Publisher, count: int, timeout: float = 60.0) -> None:
    """Ask ``members`` until the publisher's node has heard of ``count`` members."""
    deadline = time.monotonic() + timeout
    while (known := publisher.members()) < count:
        if time.monotonic() > deadline:
            raise BenchError(f"the group reached {known} members, never {count}")
        time.sleep(0.05)


def bench_fanout(rounds: int, redis: str, sizes: Sizes) -> str:
    raise_nofile(sizes.connections + 1024)
    broker = redis_process(redis)
    samples: dict[int, list[FanoutSample]] = {1: [], 2: []}
    header = (
        f"{'round':<7}{'workers':<9}{'delivered':>15}{'deliveries/s':>14}{'p50 ms':>8}"
        f"{'p99 ms':>8}{'lost':>6}  CPU us/delivery: {'server':>7}{'client':>7}{'Redis':>7}"
    )
    lines = [
        f"fan-out: {sizes.connections:,} subscribers from {sizes.processes} client processes "
        f"({', '.join(SOURCES[: sizes.processes])}), {sizes.messages} messages back to back, "
        f"{rounds} rounds interleaved; Redis {redis}; {_load()}",
        header,
    ]
    print("\n".join(lines), flush=True)
    with running(1, redis) as one, running(2, redis) as two:
        servers = {1: one, 2: two}
        for number in range(1, rounds + 1):
            for count in (1, 2) if number % 2 else (2, 1):
                sample = fanout_round(servers[count], sizes, broker, str(count))
                samples[count].append(sample)
                row = _fanout_row(str(number), sample)
                print(row, flush=True)
                lines.append(row)
    medians = {n: _median_sample(samples[n]) for n in samples}
    lines += [_fanout_row("median", medians[n]) for n in (1, 2)]
    ratio = medians[2].round.rate / medians[1].round.rate
    lost = sum(s.round.lost for n in samples for s in samples[n])
    p99 = medians[2].round.p99_ms
    share = max(  # a quick round's server CPU may read 0 (psutil's 10 ms tick)
        m.client_us / m.server_us if m.server_us else math.inf for m in medians.values()
    )
    lines += [
        f"deliveries/s 2/1: {ratio:.2f}x (target >= 0.8x: {_verdict(ratio >= 0.8)}); "
        f"p99 with 2 workers {p99:.1f} ms (target < 50 ms: {_verdict(p99 < 50)}); "
        f"lost {lost} (target 0: {_verdict(lost == 0)})",
        f"client CPU at most {share:.2f}x the server's "
        f"(must stay under {CLIENT_SHARE}x: {_verdict(share < CLIENT_SHARE)})",
    ]
    return "\n".join(lines[2 + 2 * rounds :])


def _median_sample(samples: Sequence[FanoutSample]) -> FanoutSample:
    rounds = [s.round for s in samples]
    return FanoutSample(
        Round(
            variant=rounds[0].variant,
            delivered=sum(r.delivered for r in rounds),
            expected=sum(r.expected for r in rounds),
            complete=sum(r.complete for r in rounds),
            rate=statistics.median(r.rate for r in rounds),
            p50_ms=statistics.median(r.p50_ms for r in rounds),
            p99_ms=statistics.median(r.p99_ms for r in rounds),
            server_cpu=statistics.median(r.server_cpu for r in rounds),
            client_cpu=statistics.median(r.client_cpu for r in rounds),
        ),
        *(
            statistics.median(getattr(s, side) for s in samples)
            for side in ("server_us", "client_us", "redis_us")
        ),
    )


def _fanout_row(label: str, sample: FanoutSample) -> str:
    r = sample.round
    delivered = f"{r.delivered:,}/{r.expected:,}"
    return (
        f"{label:<7}{r.variant:<9}{delivered:>15}{r.rate:>14,.0f}{r.p50_ms:>8.1f}"
        f"{r.p99_ms:>8.1f}{r.lost:>6}  {'':17}{sample.server_us:>7.2f}"
        f"{sample.client_us:>7.2f}{sample.redis_us:>7.2f}"
    )


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _load() -> str:
    return "load " + ", ".join(f"{value:.1f}" for value in psutil.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", choices=["echo", "fanout"])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--seconds", type=float, default=2.0, help="echo: seconds per round")
    parser.add_argument("--depth", type=int, default=32, help="echo: messages in flight each")
    parser.add_argument("--client-processes", type=int, help="echo: 4; fanout: one per 250")
    parser.add_argument("--connections", type=int, help="echo: 200; fanout: 1,000")
    parser.add_argument("--messages", type=int, default=20, help="fanout: messages per round")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379", help="fanout: Redis URL")
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 5)
    try:
        if args.which == "echo":
            connections = args.connections or (20 if args.quick else 200)
            report = bench_echo(
                rounds,
                0.3 if args.quick else args.seconds,
                connections,
                args.client_processes or (2 if args.quick else 4),
                args.depth,
            )
        else:
            connections = args.connections or (50 if args.quick else 1000)
            processes = args.client_processes or max(2, math.ceil(connections / 250))
            messages = 5 if args.quick else args.messages
            sizes = Sizes(connections, messages, rounds, processes)
            report = bench_fanout(rounds, args.redis, sizes)
    except BenchError as exc:
        print(f"cluster_load: {exc}", file=sys.stderr)
        return 1
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
