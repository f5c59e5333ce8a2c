"""Memory after an attack (issue 13, item 5): what the echo and chat servers keep once it ends.

For each app (``examples.echo:app`` at ``/``, ``examples.chat:app`` at ``/ws/bench``), served
by ``corral serve`` in its own process (``common.py corral --app ...``), once with the memory
trim off (``--no-memory-trim``) and once on (the default): the RSS at rest (after a warm-up
and ``gc.collect()``), then the attack round below, from 127.0.0.1, twice. Each round records
the peak RSS (sampled every 50 ms) and the RSS once the server is idle again and a trim, if
due, has had its chance (``--settle`` seconds), without a collection. At the end the server
reports from inside (``heap_report``): the RSS after a full collection, by kind of mapping,
glibc's and Python's accounts, and whether any Connection or Session outlived its client; the
trim-off server then runs one ``malloc_trim(0)`` by hand, which gives its cost.

The round, every part bounded in count and time and stopping by itself:
  hold       2,000 upgraded connections (``--connections``) opened, held together, reset
  heads      400 oversize heads (20 KB: 431) and 200 slow heads (a byte per 0.2 s for 2 s)
  big        20 connections, each sending 4 messages of 1 MiB (the echo sends them back;
             the chat's 64 KiB limit closes with 1009)
  resets     10,000 connect-and-resets, 50 at once (10 s at most)
  fragments  one message in 100,000 one-byte fragments
  pings      100,000 pings on one connection (20 s at most)

    python bench/attack_memory.py            # both apps, trim off and on, ~6 min
    python bench/attack_memory.py --quick    # a smoke run: small counts, echo only
"""

from __future__ import annotations

import socket
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ServerProcess, bench_parser, print_report, raise_nofile, run_server  # noqa: E402
from wsclient import HOST, PING_OPCODE, TEXT, BenchError, handshake  # noqa: E402

APPS = {"echo": ("examples.echo:app", "/"), "chat": ("examples.chat:app", "/ws/bench")}
MB = 1e6
_ZERO_MASK = b"\0\0\0\0"  # a valid mask that leaves the payload as it is: frames cost nothing
_RESET = struct.pack("ii", 1, 0)


@attrs.frozen
class Sizes:
    """How much of each attack one round carries."""

    hold: int
    resets: int
    fragments: int
    pings: int
    big: int


FULL = Sizes(hold=2000, resets=10_000, fragments=100_000, pings=100_000, big=20)
QUICK = Sizes(hold=200, resets=500, fragments=2_000, pings=2_000, big=2)


def frame(payload: bytes, opcode: int = TEXT, *, fin: bool = True) -> bytes:
    """A client frame masked with a zero key (valid, and no byte of ``payload`` changes)."""
    size = len(payload)
    if size < 126:
        length = bytes([0x80 | size])
    elif size < 2**16:
        length = bytes([0x80 | 126]) + struct.pack("!H", size)
    else:
        length = bytes([0x80 | 127]) + struct.pack("!Q", size)
    return bytes([(0x80 if fin else 0) | opcode]) + length + _ZERO_MASK + payload


# ---- the attacks: each a coroutine over the server's port and path ----------------------


async def connect(port: int) -> trio.SocketStream:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)  # close = RST, no TIME_WAIT
    try:
        await sock.connect((HOST, port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


async def _upgrade(port: int, path: str) -> trio.SocketStream:
    stream = await connect(port)
    try:
        await stream.send_all(handshake(port, path))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = await stream.receive_some()
            if not chunk:
                raise BenchError(f"closed during the handshake after {head!r}")
            head += chunk
        if not head.startswith(b"HTTP/1.1 101"):
            raise BenchError(f"upgrade refused: {head.splitlines()[0]!r}")
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return stream


async def _drain(stream: trio.SocketStream, until: int | None = None) -> int:
    """Read until the server ends TCP (or ``until`` bytes came); the bytes read."""
    received = 0
    try:
        while until is None or received < until:
            chunk = await stream.receive_some()
            if not chunk:
                break
            received += len(chunk)
    except trio.BrokenResourceError:
        pass
    return received


async def each(count: int, at_once: int, one: Callable[[int], Awaitable[None]]) -> None:
    """``one(i)`` for i in range(count), ``at_once`` at a time."""
    limiter = trio.Semaphore(at_once)

    async def run(index: int) -> None:
        async with limiter:
            await one(index)

    async with trio.open_nursery() as nursery:
        for index in range(count):
            await limiter.acquire()  # do not spawn ahead of the limit
            limiter.release()
            nursery.start_soon(run, index)


async def hold(port: int, path: str, sizes: Sizes) -> None:
    """Open ``sizes.hold`` upgraded connections, hold them all at once, then reset them."""
    streams: list[trio.SocketStream] = []

    async def one(_: int) -> None:
        streams.append(await _upgrade(port, path))

    try:
        await each(sizes.hold, 100, one)
        await trio.sleep(0.5)  # all of them held together
    finally:
        for stream in streams:
            await trio.aclose_forcefully(stream)


async def heads(port: int, path: str, sizes: Sizes) -> None:
    """Oversize heads (431) and slow heads (slowloris, dropped after 2 s)."""
    oversize = handshake(port, path).replace(
        b"\r\n\r\n", b"\r\nX-Pad: " + b"a" * 20_000 + b"\r\n\r\n"
    )

    async def big_head(_: int) -> None:
        stream = await connect(port)
        try:
            await stream.send_all(oversize)
            await _drain(stream)
        except trio.BrokenResourceError:
            pass  # refused before the whole head was read
        finally:
            await trio.aclose_forcefully(stream)

    async def slow_head(_: int) -> None:
        stream = await connect(port)
        try:
            for byte in handshake(port, path)[:10]:
                await stream.send_all(bytes([byte]))
                await trio.sleep(0.2)
        finally:
            await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(each, 400, 50, big_head)
        nursery.start_soon(each, 200, 200, slow_head)


async def big(port: int, path: str, sizes: Sizes) -> None:
    """Connections sending 1 MiB messages; the echoes (or the 1009 close) are read back."""
    message = frame(b"m" * 2**20)

    async def one(_: int) -> None:
        stream = await _upgrade(port, path)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_drain, stream, 4 * (2**20 + 10))
                try:
                    for _ in range(4):
                        await stream.send_all(message)
                except trio.BrokenResourceError:
                    pass  # the chat closed (1009)
        finally:
            await trio.aclose_forcefully(stream)

    await each(sizes.big, sizes.big, one)


async def resets(port: int, path: str, sizes: Sizes) -> None:
    """Connect and reset at once, ``sizes.resets`` times (at most 10 s)."""

    async def one(_: int) -> None:
        stream = await connect(port)
        await trio.aclose_forcefully(stream)

    with trio.move_on_after(10):
        await each(sizes.resets, 50, one)


async def fragments(port: int, path: str, sizes: Sizes) -> None:
    """One text message in ``sizes.fragments`` one-byte frames."""
    first, middle = frame(b"f", TEXT, fin=False), frame(b"f", 0, fin=False)
    batch = middle * 1000
    stream = await _upgrade(port, path)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_drain, stream, sizes.fragments)
            try:
                await stream.send_all(first)
                for _ in range(sizes.fragments // 1000 - 1):
                    await stream.send_all(batch)
                await stream.send_all(middle * 999 + frame(b"f", 0))
            except trio.BrokenResourceError:
                nursery.cancel_scope.cancel()  # the chat closed (1009)
    finally:
        await trio.aclose_forcefully(stream)


async def pings(port: int, path: str, sizes: Sizes) -> None:
    """``sizes.pings`` pings on one connection, the pongs read meanwhile (at most 20 s)."""
    batch = frame(b"", PING_OPCODE) * 1000
    stream = await _upgrade(port, path)
    try:
        with trio.move_on_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_drain, stream, 2 * sizes.pings)
                for _ in range(sizes.pings // 1000):
                    await stream.send_all(batch)
    finally:
        await trio.aclose_forcefully(stream)


ATTACKS = (hold, heads, big, resets, fragments, pings)


# ---- one server under the attack rounds ---------------------------------------------------


async def _attack_round(port: int, path: str, sizes: Sizes, rss: Callable[[], int]) -> int:
    """Every attack in turn; the peak RSS seen meanwhile (sampled every 50 ms)."""
    peak = rss()

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, rss())
            await trio.sleep(0.05)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sample)
        for attack in ATTACKS:
            with trio.fail_after(120):
                await attack(port, path, sizes)
        nursery.cancel_scope.cancel()
    return max(peak, rss())


@attrs.frozen
class Run:
    """One server's figures (bytes) under two attack rounds."""

    app: str
    trim: bool
    rest: int
    peaks: tuple[int, ...]
    afters: tuple[int, ...]
    at_rest: dict[str, Any]
    """``heap_report`` at rest, after the warm-up."""
    report: dict[str, Any]
    """``heap_report`` at the end (after a collection; with a hand trim if ``trim`` is off)."""


def measure(name: str, trim: bool, sizes: Sizes, settle: float) -> Run:
    app, path = APPS[name]
    limits = {"nofile": 16_384, "max_connections": 10_000}
    with run_server("corral", app=app, memory_trim=trim, **limits) as server:
        trio.run(hold, server.port, path, attrs.evolve(sizes, hold=200))  # warm-up
        idle_fds = _idle(server, None, settle)
        rest = server.settled_rss()
        at_rest = server.heap_report()
        peaks, afters = [], []
        for _ in range(2):
            peaks.append(trio.run(_attack_round, server.port, path, sizes, server.rss))
            _idle(server, idle_fds, settle)
            afters.append(server.rss())
        report = server.heap_report(trim=not trim)
    return Run(name, trim, rest, tuple(peaks), tuple(afters), at_rest, report)


def _idle(server: ServerProcess, fds: int | None, settle: float) -> int:
    """Wait until the server holds no connection and is idle, then ``settle`` seconds (a
    trim is due one quiet interval after its burst); its descriptor count."""
    if fds is not None:
        server.wait_open_files(fds, timeout=60)
    server.wait_idle()
    time.sleep(settle)
    return server.open_files()


# ---- the report ---------------------------------------------------------------------------


def report(runs: list[Run], sizes: Sizes) -> str:
    lines = [
        f"memory after an attack round (hold {sizes.hold:,}, 400 oversize + 200 slow heads, "
        f"{sizes.big} connections x 4 messages of 1 MiB, {sizes.resets:,} connect-resets, "
        f"{sizes.fragments:,} fragments, {sizes.pings:,} pings), twice; RSS in MB;",
        "after = idle again, no gc.collect(); after gc = the end, after a full collection",
        f"{'app':<6}{'trim':<6}{'rest':>7}{'peak 1':>8}{'after 1':>9}{'peak 2':>8}"
        f"{'after 2':>9}{'after gc':>10}{'hand trim':>11}{'trim ms':>9}",
    ]
    for run in runs:
        final = run.report.get("untrimmed", run.report)
        hand = run.report.get("trim")
        lines.append(
            f"{run.app:<6}{'on' if run.trim else 'off':<6}{run.rest / MB:>7.1f}"
            f"{run.peaks[0] / MB:>8.1f}{run.afters[0] / MB:>9.1f}{run.peaks[1] / MB:>8.1f}"
            f"{run.afters[1] / MB:>9.1f}{final['rss'] / MB:>10.1f}"
            + (
                f"{hand['rss_after'] / MB:>11.1f}{hand['seconds'] * 1e3:>9.1f}"
                if hand
                else f"{'-':>11}{'-':>9}"
            )
        )
    lines.append(
        "what holds it, at rest -> at the end (after gc; trim-off runs before their hand trim):"
    )
    lines.append(
        f"{'app':<6}{'trim':<6}{'[heap] MB':>13}{'anon MB':>13}{'malloc used MB':>16}"
        f"{'py blocks':>19}{'gc ms':>7}  per-connection objects left"
    )
    for run in runs:
        final = run.report.get("untrimmed", run.report)

        def change(figure: Callable[[dict[str, Any]], float], scale: float = MB) -> str:
            return f"{figure(run.at_rest) / scale:.1f}->{figure(final) / scale:.1f}"  # noqa: B023

        left = ", ".join(
            f"{k.rsplit('.', 1)[1]} {v}" for k, v in final["per_connection_left"].items()
        )
        lines.append(
            f"{run.app:<6}{'on' if run.trim else 'off':<6}"
            f"{change(lambda r: r['mappings'].get('heap', 0)):>13}"
            f"{change(lambda r: r['mappings'].get('anonymous', 0)):>13}"
            f"{change(lambda r: r['malloc']['in_use']):>16}"
            f"{change(lambda r: r['python_blocks'], 1e3):>18}k"
            f"{final['gc_seconds'] * 1e3:>7.1f}  {left}"
        )
    lines.append("live objects of corral's and trio's classes at the end (most first):")
    for run in runs:
        top = list(run.report.get("untrimmed", run.report)["objects"].items())[:6]
        shown = ", ".join(f"{name.rsplit('.', 1)[1]} {count}" for name, count in top)
        lines.append(f"  {run.app} trim {'on' if run.trim else 'off'}: {shown}")
    return "\n".join(lines)


def _check(runs: list[Run]) -> None:
    for run in runs:
        final = run.report.get("untrimmed", run.report)
        leaked = {k: v for k, v in final["per_connection_left"].items() if v}
        if leaked:
            raise BenchError(f"{run.app}: objects outlived their connections: {leaked}")


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "small counts, the echo only", "2,000 held")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds idle before a reading")
    parser.add_argument("--apps", nargs="+", choices=sorted(APPS), default=sorted(APPS))
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.connections:
        sizes = attrs.evolve(sizes, hold=args.connections)
    apps = ["echo"] if args.quick else args.apps
    raise_nofile(sizes.hold + 1024)

    def run_all() -> str:
        runs = [measure(app, trim, sizes, args.settle) for app in apps for trim in (False, True)]
        _check(runs)
        return report(runs, sizes)

    return print_report("attack_memory", run_all)


if __name__ == "__main__":
    sys.exit(main())
