"""Connection-churn soak: does corral's echo server leak memory, tasks or actors over time?

The driver (this script, default role) starts ``python bench/soak.py server``, a process that
serves ``examples.echo:app`` exactly as ``corral serve`` does (``Server``, SIGTERM drains) and
answers ``stats`` requests on stdin with one JSON line: RSS after ``gc.collect()``, trio's live
task count (the task tree walked from the root task), live actors, open connections, and the
log records it has seen (that role lives in ``soak_server.py``). The driver then opens
connections at a steady rate: most connect, exchange a few messages and close cleanly; a share
vanish with a TCP reset (some of them in the middle of a frame). Phases: baseline (idle) ->
warm-up churn -> idle sample A -> churn for ``--duration`` -> idle sample B -> SIGTERM.

Checks: RSS grows under 5% from A to B; tasks and actors at A and B equal the idle baseline;
one "closed" log line per connection (terminate ran for each); no log record at WARNING or
above, nor any INFO record but the expected ones; every clean client got its echoes; the
server drains and exits 0. 127.0.0.1 only; every wait is bounded; stops by itself.

    python bench/soak.py --duration 60 --rate 100
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import signal
import socket
import struct
import sys
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import trio
from trio_websocket import open_websocket_url

sys.path.insert(0, str(Path(__file__).resolve().parent))

from soak_server import APP, HOST, serve_with_stats  # noqa: E402
from stats_pipe import StatsProcess  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MESSAGES = 3
"""Round trips per clean connection."""
CLIENT_DEADLINE = 30.0
"""One client's whole life; past it the client counts as failed."""
RSS_GROWTH_LIMIT = 0.05
IN_FLIGHT = 100
"""Clients alive at once, at most: about ten times what 100 connections/s need."""


# ---- the driver: the server process ---------------------------------------------------


class SoakServer(StatsProcess):
    """The server role as a subprocess: its stats once idle, and its final record."""

    async def idle_stats(self, timeout: float = 15.0) -> dict[str, Any]:
        """Stats once every connection has ended (bounded), after a short settling pause."""
        with trio.fail_after(timeout):
            while (await self.stats())["connections"]:
                await trio.sleep(0.1)
            await trio.sleep(0.5)
            return await self.stats()

    async def stop(self, timeout: float = 30.0) -> tuple[int | None, dict[str, Any] | None]:
        """SIGTERM; the exit code and the final record (None if it had to be killed)."""
        self.process.send_signal(signal.SIGTERM)
        final = None
        with trio.move_on_after(timeout):
            final = await self.next_record(timeout)
            await self.process.wait()
        if self.process.returncode is None:
            await self.kill()
            return None, final
        return self.process.returncode, final


# ---- the driver: clients --------------------------------------------------------------


@attrs.define
class Churn:
    """What the clients did and saw."""

    clean: int = 0
    reset: int = 0
    reset_mid_frame: int = 0
    echoes: int = 0
    failures: list[str] = attrs.Factory(list)

    @property
    def connections(self) -> int:
        return self.clean + self.reset + len(self.failures)


async def clean_client(url: str, churn: Churn, index: int) -> None:
    """Connect, echo MESSAGES times, close with 1000."""
    async with open_websocket_url(url) as ws:
        for n in range(MESSAGES):
            message = f"soak {index}.{n}"
            await ws.send_message(message)
            if await ws.get_message() != message:
                raise AssertionError(f"wrong echo for {message!r}")
            churn.echoes += 1
    churn.clean += 1


def _masked_frame(opcode: int, payload: bytes) -> bytes:
    assert len(payload) < 126
    mask = os.urandom(4)
    body = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + body


async def reset_client(port: int, churn: Churn, mid_frame: bool) -> None:
    """Handshake by hand, echo once, maybe send half a frame, then vanish with a TCP RST."""
    stream = await trio.open_tcp_stream(HOST, port)
    key = base64.b64encode(os.urandom(16)).decode()
    await stream.send_all(
        (
            f"GET / HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    expected_echo = b"\x81\x05reset"
    data = b""
    while not data.endswith(b"\r\n\r\n"):
        chunk = await stream.receive_some(1)  # byte by byte: the head only, nothing after
        if not chunk:
            raise AssertionError("closed during the handshake")
        data += chunk
    if not data.startswith(b"HTTP/1.1 101 "):
        raise AssertionError(f"no 101: {data[:40]!r}")
    await stream.send_all(_masked_frame(0x1, b"reset"))
    echo = b""
    while len(echo) < len(expected_echo):
        chunk = await stream.receive_some(len(expected_echo) - len(echo))
        if not chunk:
            raise AssertionError("closed before the echo")
        echo += chunk
    if echo != expected_echo:
        raise AssertionError(f"wrong echo {echo!r}")
    churn.echoes += 1
    if mid_frame:
        await stream.send_all(_masked_frame(0x2, b"x" * 100)[:50])
        churn.reset_mid_frame += 1
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()
    churn.reset += 1


async def one_client(port: int, churn: Churn, index: int, rng: random.Random, reset: float) -> None:
    try:
        with trio.fail_after(CLIENT_DEADLINE):
            if rng.random() < reset:
                await reset_client(port, churn, mid_frame=rng.random() < 0.5)
            else:
                await clean_client(f"ws://{HOST}:{port}/", churn, index)
    except Exception as exc:  # noqa: BLE001 - a failed client is a finding, not a crash
        churn.failures.append(f"client {index}: {exc!r}")


async def churn_for(
    port: int,
    seconds: float,
    rate: float,
    reset: float,
    churn: Churn,
    rng: random.Random,
    in_flight: int,
) -> float:
    """Start ``rate`` clients a second for ``seconds`` on a fixed schedule, at most
    ``in_flight`` at once (a loaded machine slows the churn instead of collapsing it); wait
    for them all. Return how late the last start was against the schedule (s)."""
    limiter = trio.CapacityLimiter(in_flight)
    late = 0.0

    async def limited(index: int, task_status: trio.TaskStatus[None]) -> None:
        async with limiter:
            task_status.started()
            await one_client(port, churn, index, rng, reset)

    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        for index in range(int(seconds * rate)):
            due = start + index / rate
            await trio.sleep_until(due)
            await nursery.start(limited, index)
            late = trio.current_time() - due
    return late


# ---- the driver: the run --------------------------------------------------------------


@attrs.frozen
class SoakResult:
    duration: float
    rate: float
    baseline: dict[str, Any]
    after_warmup: dict[str, Any]
    end: dict[str, Any]
    churn: Churn
    exit_code: int | None
    final: dict[str, Any] | None
    late: float
    """How far behind schedule the last client of the soak phase started (s)."""
    churned: float
    """How long the soak phase took, its last client included (s)."""

    @property
    def rss_growth(self) -> float:
        return float(self.end["rss"]) / float(self.after_warmup["rss"]) - 1

    @property
    def closed_lines(self) -> int:
        return sum(self.end["closed_by_code"].values())

    def checks(self) -> dict[str, bool]:
        final_unexpected = (self.final or {}).get("unexpected", [])
        return {
            f"RSS growth after warm-up < {RSS_GROWTH_LIMIT:.0%}": (
                self.rss_growth < RSS_GROWTH_LIMIT
            ),
            "tasks back to baseline": (
                self.baseline["tasks"] == self.after_warmup["tasks"] == self.end["tasks"]
            ),
            "actors back to baseline": (
                self.baseline["actors"] == self.after_warmup["actors"] == self.end["actors"]
            ),
            "one close line per connection": self.closed_lines == self.churn.connections,
            "no client failed": not self.churn.failures,
            "no unexpected log record": not self.end["unexpected"] and not final_unexpected,
            "drained and exited 0": self.exit_code == 0,
        }

    @property
    def ok(self) -> bool:
        return all(self.checks().values())

    def report(self) -> str:
        mib = 2**20
        a, b, base = self.after_warmup, self.end, self.baseline
        codes = ", ".join(f"{c}: {n}" for c, n in sorted(b["closed_by_code"].items()))
        lines = [
            f"{'':24}{'baseline':>12}{'after warm-up':>16}{'end':>12}",
            f"{'RSS (MiB)':24}{base['rss'] / mib:12.1f}{a['rss'] / mib:16.1f}{b['rss'] / mib:12.1f}"
            f"   growth {self.rss_growth:+.2%}",
            f"{'live trio tasks':24}{base['tasks']:12}{a['tasks']:16}{b['tasks']:12}",
            f"{'live actors':24}{base['actors']:12}{a['actors']:16}{b['actors']:12}",
            f"connections: {self.churn.connections} in all ({self.churn.clean} clean, "
            f"{self.churn.reset} reset of which {self.churn.reset_mid_frame} mid-frame), "
            f"{self.churn.echoes} echoes, {len(self.churn.failures)} failed",
            f"soak phase: {self.duration:g} s scheduled, {self.churned:.1f} s taken, last start "
            f"{self.late:.2f} s late",
            f"close lines: {self.closed_lines} ({codes})",
            f"unexpected log records: {len(b['unexpected'])}",
        ]
        lines += [f"  {line}" for line in b["unexpected"][:10]]
        lines += [f"  {failure}" for failure in self.churn.failures[:10]]
        lines += [f"{'ok  ' if ok else 'FAIL'} {name}" for name, ok in self.checks().items()]
        lines.append("PASS" if self.ok else "FAIL")
        return "\n".join(lines)


async def run_soak(
    duration: float,
    rate: float,
    reset: float,
    warmup: float,
    *,
    in_flight: int = IN_FLIGHT,
    idle_timeout: float | None = None,
    seed: int = 0,
) -> SoakResult:
    rng = random.Random(seed)
    churn = Churn()
    options = [] if idle_timeout is None else ["--idle-timeout", str(idle_timeout)]
    server = await SoakServer.start(Path(__file__).resolve(), options)
    try:
        listening = await server.next_record()
        port = int(listening["port"])
        baseline = await server.idle_stats()
        print(f"warm-up: {warmup:g} s", flush=True)
        await churn_for(port, warmup, rate, reset, churn, rng, in_flight)
        after_warmup = await server.idle_stats()
        print(f"soak: {duration:g} s", flush=True)
        started = trio.current_time()
        late = await churn_for(port, duration, rate, reset, churn, rng, in_flight)
        churned = trio.current_time() - started
        end = await server.idle_stats()
        exit_code, final = await server.stop()
    finally:
        await server.kill()
    return SoakResult(
        duration, rate, baseline, after_warmup, end, churn, exit_code, final, late, churned
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", nargs="?", choices=["driver", "server"], default="driver")
    parser.add_argument("--duration", type=float, default=60.0, help="churn after warm-up (s)")
    parser.add_argument("--warmup", type=float, help="warm-up churn (s); default duration/6")
    parser.add_argument("--rate", type=float, default=50.0, help="new connections per second")
    parser.add_argument("--reset", type=float, default=0.2, help="share that vanish with RST")
    parser.add_argument("--in-flight", type=int, default=IN_FLIGHT, help="clients at once, max")
    parser.add_argument("--port", type=int, default=0, help="server role: port to bind")
    parser.add_argument(
        "--idle-timeout", type=float, help="override the echo route's idle timeout (s)"
    )
    args = parser.parse_args(argv)
    if args.role == "server":
        trio.run(serve_with_stats, args.port, args.idle_timeout)
        return 0
    warmup = args.warmup if args.warmup is not None else max(5.0, args.duration / 6)
    idle = "" if args.idle_timeout is None else f" (idle timeout {args.idle_timeout:g} s)"
    print(
        f"soak: {APP}{idle}, {args.rate:g} connections/s, {args.reset:.0%} reset, "
        f"{MESSAGES} echoes per clean connection"
    )
    result = trio.run(
        partial(
            run_soak,
            args.duration,
            args.rate,
            args.reset,
            warmup,
            in_flight=args.in_flight,
            idle_timeout=args.idle_timeout,
        )
    )
    print(result.report())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
