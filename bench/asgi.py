"""ASGI requests per second and latency: one small FastAPI app (``asgi_app.py``) under corral,
uvicorn (asyncio, httptools) and hypercorn on trio, in the same run.

The three servers run for the whole benchmark, each in its own process on 127.0.0.1, logging
warnings only (no access line per request: logging is not what we measure). Each round runs
``wrk`` (keep-alive, ``--connections`` connections, one thread) against every server in turn,
the order rotating from round to round, after one warm-up run each. Beside each rate the table
gives the median and 99th-percentile latency, the server's CPU per request (psutil, process and
children) and wrk's own (its rusage): wrk's must stay well under every server's, or the figure
measures the client. Ratios are corral's over each other server's, median of the per-round ones.

``--websocket`` measures what mounting the app costs corral's own WebSocket figures instead:
the echo (``echo_throughput.py``, 50 connections) and the fan-out (``fanout.py``, 1,000
connections x 200 messages) of the same servers with and without ``asgi_app.api`` mounted,
interleaved; the server's CPU per round trip and per delivery must stay within 3% (the rates
are printed too, with their spread: on a shared machine they follow the load).

Needs ``wrk`` on PATH (Debian's package: ``apt-get install wrk``; ``scripts/setup-wrk``).
Run: ``python bench/asgi.py [--quick] [--rounds R] [--seconds S] [--connections N]``, or
``python bench/asgi.py --websocket [--quick] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import attrs
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, free_port  # noqa: E402
from wsclient import BenchError  # noqa: E402

BENCH = Path(__file__).resolve().parent
SERVERS = ("corral", "uvicorn", "hypercorn-trio")
TARGET = 1.0
"""Issue 25: corral's requests per second at least hypercorn-on-trio's."""
WEBSOCKET_TARGET = 0.97
"""Issue 25: with the ASGI app mounted, corral's echo and fan-out within 3% of without."""
CLIENT_SHARE = 0.5
"""wrk's CPU per request must stay under this share of every server's."""
PATH = "/items/3?q=x"


def server_command(name: str, port: int) -> list[str]:
    """The command that serves ``asgi_app:api`` on ``port`` (run in bench/)."""
    python = sys.executable
    if name == "corral":
        return [python, "-m", "server.run.cli", "serve", "asgi_app:api", "--port", str(port),
                "--log-level", "warning"]  # fmt: skip
    if name == "uvicorn":
        return [python, "-m", "uvicorn", "asgi_app:api", "--port", str(port),
                "--loop", "asyncio", "--http", "httptools",
                "--log-level", "warning", "--no-access-log"]  # fmt: skip
    if name == "hypercorn-trio":
        return [python, "-m", "hypercorn", "--worker-class", "trio", "--bind",
                f"127.0.0.1:{port}", "--log-level", "warning", "asgi_app:api"]  # fmt: skip
    raise ValueError(f"unknown server {name!r}")


@attrs.define
class HttpServer:
    """One ASGI server in a subprocess, its stderr in a file."""

    name: str
    port: int = attrs.field(factory=free_port)
    popen: subprocess.Popen[bytes] | None = None
    process: psutil.Process | None = None
    _stderr: object = None

    def start(self, timeout: float = 60.0) -> None:
        self._stderr = tempfile.TemporaryFile()
        environment = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{BENCH}"}
        self.popen = subprocess.Popen(
            server_command(self.name, self.port),
            cwd=BENCH,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,  # type: ignore[arg-type]
            env=environment,
        )
        self.process = psutil.Process(self.popen.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise BenchError(f"{self.name} exited at start: {self.stderr_text()[-2000:]}")
            try:
                with socket_to(self.port):
                    return
            except OSError:
                time.sleep(0.1)
        raise BenchError(f"{self.name} did not listen within {timeout:g} s")

    def stderr_text(self) -> str:
        handle = self._stderr
        assert handle is not None
        handle.seek(0)  # type: ignore[attr-defined]
        return handle.read().decode(errors="replace")  # type: ignore[attr-defined,no-any-return]

    def cpu_seconds(self) -> float:
        """User + system CPU of the server and its children so far."""
        assert self.process is not None
        total = 0.0
        for process in [self.process, *self.process.children(recursive=True)]:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10.0)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@contextmanager
def socket_to(port: int) -> Iterator[None]:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=1.0):
        yield


@attrs.frozen
class Sample:
    """One wrk run against one server."""

    requests: int
    rate: float
    p50_ms: float
    p99_ms: float
    server_cpu: float
    client_cpu: float
    errors: int

    @property
    def server_us(self) -> float:
        return self.server_cpu / max(1, self.requests) * 1e6

    @property
    def client_us(self) -> float:
        return self.client_cpu / max(1, self.requests) * 1e6


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
_PERCENTILE = re.compile(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
"""A line of wrk's latency distribution (a one-letter unit is padded: ``1.35s ``)."""


def parse_wrk(output: str) -> tuple[int, float, float, float, int]:
    """Requests, requests/s, p50 and p99 latency (ms) and errors from ``wrk --latency``."""
    requests = re.search(r"^\s*(\d+) requests in", output, re.MULTILINE)
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    if requests is None or rate is None:
        raise BenchError(f"cannot read wrk's output:\n{output}")
    percentiles = {}
    for found in _PERCENTILE.finditer(output):
        percentiles[found[1]] = float(found[2]) * _UNITS[found[3]]
    errors = sum(
        int(found) for found in re.findall(r"(?:connect|read|write|timeout) (\d+)", output)
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors += int(non_2xx[1]) if non_2xx else 0
    return int(requests[1]), float(rate[1]), percentiles["50"], percentiles["99"], errors


def run_wrk(server: HttpServer, connections: int, seconds: float) -> Sample:
    """One wrk run: its figures, the server's CPU meanwhile and wrk's own."""
    command = ["wrk", "--latency", "-t1", f"-c{connections}", f"-d{seconds:g}s",
               f"http://127.0.0.1:{server.port}{PATH}"]  # fmt: skip
    cpu0 = server.cpu_seconds()
    wrk = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert wrk.stdout is not None
    output = wrk.stdout.read().decode()
    _, status, usage = os.wait4(wrk.pid, 0)
    wrk.returncode = os.waitstatus_to_exitcode(status)
    server_cpu = server.cpu_seconds() - cpu0
    if wrk.returncode != 0:
        raise BenchError(f"wrk failed against {server.name}:\n{output}")
    requests, rate, p50, p99, errors = parse_wrk(output)
    return Sample(requests, rate, p50, p99, server_cpu, usage.ru_utime + usage.ru_stime, errors)


def http_report(results: dict[str, list[Sample]]) -> str:
    """The table (medians), the ratios against each server and the client-share check."""
    lines = [f"{'server':<16}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
             f"{'server us/req':>15}{'wrk us/req':>12}{'errors':>8}"]  # fmt: skip
    for name, samples in results.items():
        lines.append(
            f"{name:<16}{statistics.median(s.rate for s in samples):>10,.0f}"
            f"{statistics.median(s.p50_ms for s in samples):>9.2f}"
            f"{statistics.median(s.p99_ms for s in samples):>9.2f}"
            f"{statistics.median(s.server_us for s in samples):>15.1f}"
            f"{statistics.median(s.client_us for s in samples):>12.1f}"
            f"{sum(s.errors for s in samples):>8}"
        )
    corral = results["corral"]
    for other in SERVERS[1:]:
        rates = [c.rate / o.rate for c, o in zip(corral, results[other], strict=True)]
        cpu = [c.server_us / o.server_us for c, o in zip(corral, results[other], strict=True)]
        verdict = ""
        if other == "hypercorn-trio":
            verdict = "  MET" if statistics.median(rates) >= TARGET else "  MISSED"
            verdict += f" (target >= {TARGET:.1f}x)"
        lines.append(
            f"corral/{other}: req/s {statistics.median(rates):.2f}x "
            f"(rounds {min(rates):.2f}-{max(rates):.2f}), server CPU per request "
            f"{statistics.median(cpu):.2f}x{verdict}"
        )
    client = max(statistics.median(s.client_us for s in v) for v in results.values())
    server = min(statistics.median(s.server_us for s in v) for v in results.values())
    share = client / server
    lines.append(
        f"wrk's CPU per request is {share:.0%} of the cheapest server's "
        f"({'OK' if share < CLIENT_SHARE else 'MISSED'}: must stay under {CLIENT_SHARE:.0%})"
    )
    return "\n".join(lines)


def run_http(rounds: int, seconds: float, connections: int) -> int:
    if shutil.which("wrk") is None:
        print("asgi.py: wrk is not on PATH (apt-get install wrk, or scripts/setup-wrk)")
        return 2
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(
        f"ASGI: GET {PATH} on one FastAPI app, wrk -t1 -c{connections} (keep-alive), "
        f"{seconds:g} s x {rounds} round(s); {psutil.cpu_count()} CPUs, load {load}",
        flush=True,
    )
    servers = {name: HttpServer(name) for name in SERVERS}
    results: dict[str, list[Sample]] = {name: [] for name in SERVERS}
    with ExitStack() as stack:
        for server in servers.values():
            server.start()
            stack.callback(server.stop)
        for server in servers.values():
            run_wrk(server, connections, min(1.0, seconds))  # warm-up
        for number in range(rounds):
            shift = number % len(SERVERS)
            for name in SERVERS[shift:] + SERVERS[:shift]:
                sample = run_wrk(servers[name], connections, seconds)
                results[name].append(sample)
                print(
                    f"round {number + 1} {name:<15} {sample.rate:>9,.0f} req/s "
                    f"p99 {sample.p99_ms:.1f} ms, server {sample.server_us:.0f} us/req, "
                    f"wrk {sample.client_us:.0f} us/req",
                    flush=True,
                )
    print(http_report(results))
    errors = sum(sample.errors for samples in results.values() for sample in samples)
    return 1 if errors else 0


def run_websocket(rounds: int, quick: bool) -> int:
    """Echo and fan-out figures of corral with and without the ASGI app, interleaved."""
    import echo_throughput
    import fanout
    from common import ServerProcess

    echo_sizes = echo_throughput.Sizes(
        warmup=0.5 if quick else 1.0, seconds=1.0 if quick else 3.0, rounds=rounds
    )
    fan_sizes = fanout.Sizes(
        connections=200 if quick else 1000, messages=10 if quick else 200, rounds=rounds,
        processes=1,
    )  # fmt: skip
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"corral's WebSocket figures with and without asgi_app.api mounted; load {load}")
    echo = {
        "without": ServerProcess("corral", app="examples.echo:app"),
        "with ASGI": ServerProcess("corral", app="asgi_app:echo_app"),
    }
    fan = {
        "without": ServerProcess("corral", role="fanout", nofile=fan_sizes.connections + 1024),
        "with ASGI": ServerProcess(
            "corral-asgi", role="fanout", nofile=fan_sizes.connections + 1024
        ),
    }
    echo_rates: dict[str, list[float]] = {side: [] for side in echo}
    echo_cpu: dict[str, list[float]] = {side: [] for side in echo}
    fan_rates: dict[str, list[float]] = {side: [] for side in fan}
    fan_cpu: dict[str, list[float]] = {side: [] for side in fan}
    with ExitStack() as stack:
        for server in [*echo.values(), *fan.values()]:
            server.start()
            stack.callback(server.stop)
        sides = list(echo)
        for number in range(rounds):
            for side in sides if number % 2 == 0 else sides[::-1]:
                sample = echo_throughput.measure_round(echo[side], 50, echo_sizes)
                echo_rates[side].append(sample.rate)
                echo_cpu[side].append(sample.server_us)
                result = fanout.run_round(fan[side], fan_sizes)
                if result.lost:
                    raise BenchError(f"fan-out {side}: {result.lost} deliveries lost")
                fan_rates[side].append(result.rate)
                fan_cpu[side].append(result.server_cpu / max(1, result.delivered) * 1e6)
                print(
                    f"round {number + 1} {side:<9} echo {sample.rate:>9,.0f} rt/s "
                    f"({sample.server_us:.1f} us/rt, client {sample.client_us:.1f}); fan-out "
                    f"{result.rate:>10,.0f} deliveries/s ({fan_cpu[side][-1]:.2f} us each)",
                    flush=True,
                )
    print(websocket_report(echo_rates, echo_cpu, fan_rates, fan_cpu))
    return 0


def websocket_report(
    echo_rates: dict[str, list[float]],
    echo_cpu: dict[str, list[float]],
    fan_rates: dict[str, list[float]],
    fan_cpu: dict[str, list[float]],
) -> str:
    """with/without ratios (rates: higher is better; CPU: without/with, higher is better).
    The verdict is on the CPU figures: on a shared machine the rates swing with the load."""
    lines = []
    for label, values, invert in (
        ("echo 50 conns rt/s", echo_rates, False),
        ("echo server CPU per rt", echo_cpu, True),
        ("fan-out deliveries/s", fan_rates, False),
        ("fan-out server CPU per delivery", fan_cpu, True),
    ):
        ratios = [
            (without / mounted) if invert else (mounted / without)
            for mounted, without in zip(values["with ASGI"], values["without"], strict=True)
            if mounted > 0 and without > 0
        ]
        if not ratios:
            lines.append(f"with/without ASGI, {label}: n/a (CPU under psutil's tick: too short)")
            continue
        spread = [max(side) / min(side) - 1 for side in values.values() if min(side) > 0]
        median = statistics.median(ratios)
        verdict = "MET" if median >= WEBSOCKET_TARGET else "MISSED"
        if not invert:
            verdict = "(a rate: reported, the verdict is the CPU's)"
        lines.append(
            f"with/without ASGI, {label}: {median:.3f}x (rounds {min(ratios):.3f}-"
            f"{max(ratios):.3f}; each side's spread up to {max(spread):.1%}) {verdict}"
            + (f" (target >= {WEBSOCKET_TARGET})" if invert else "")
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short round, for a smoke run")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 5, quick 1)")
    parser.add_argument("--seconds", type=float, help="seconds per wrk run (default 5)")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument(
        "--websocket", action="store_true", help="echo and fan-out with and without the app"
    )
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 5)
    if args.websocket:
        return run_websocket(rounds, args.quick)
    seconds = args.seconds or (1.0 if args.quick else 5.0)
    return run_http(rounds, seconds, args.connections)


if __name__ == "__main__":
    sys.exit(main())
