"""Memory a server holds for connections whose heads carry 2,700 tiny headers (issue 13, item 1).

The echo example (``corral serve examples.echo:app``, in its own process) gets ``--connections``
upgrade requests whose heads carry 2,700 tiny header fields in 13.6 KB (under the 16 KiB byte
limit), all at once from 127.0.0.1; every client keeps its socket open until all have their
answer. Printed: the answers (101 before the header-count limit, 431 with it), the server's RSS
at rest and with every client still connected (after ``gc.collect()``), the descriptors it
holds then, its RSS once it has closed the refused connections, and its CPU per head. 1,000 by
default: the code before the limit spends about 40 ms on each such head here, so with more the
first upgraded clients reach the 60 s idle timeout before the reading.

``--tree DIR`` serves another checkout's code, to measure the server before the limit::

    git worktree add --detach /tmp/corral-before-431 5c30882   # the commit before the 431
    python bench/header_memory.py --tree /tmp/corral-before-431
    python bench/header_memory.py                       # this checkout
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import attrs
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from attack_memory import connect, each  # noqa: E402
from common import ROOT, ServerProcess, bench_parser, print_report, raise_nofile, run_server  # noqa: E402
from wsclient import handshake  # noqa: E402

HEADERS = 2_700
MB = 1e6


def tiny_headers_head(port: int) -> bytes:
    """An upgrade request with ``HEADERS`` extra fields of 5 bytes each (``a:b``)."""
    return handshake(port).replace(b"\r\n\r\n", b"\r\n" + b"a:b\r\n" * HEADERS + b"\r\n")


async def send_heads(
    port: int, count: int, answers: Counter[str], loaded: trio.Event, release: trio.Event
) -> None:
    """``count`` connections each send the head and count its status in ``answers``; once
    all have (``loaded`` set), they wait for ``release`` and close."""
    head = tiny_headers_head(port)
    answered = trio.Semaphore(0)

    async def one(_: int) -> None:
        stream = await connect(port)
        try:
            await stream.send_all(head)
            answer = b""
            while b"\r\n" not in answer and (chunk := await stream.receive_some()):
                answer += chunk
            answers[answer.split(b" ", 2)[1].decode() if answer else "closed"] += 1
            answered.release()
            await release.wait()
        finally:
            await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(each, count, count, one)
        for _ in range(count):
            await answered.acquire()
        loaded.set()


@attrs.frozen
class Reading:
    """What the heads cost the server (bytes, seconds, descriptors)."""

    answers: Counter[str]
    cpu: float
    held: int
    """RSS (after a collection) once every head is answered, every client still connected."""
    fds: int
    """Descriptors the server holds then."""
    after_linger: int | None
    """RSS once the server has closed every refused connection (clients still connected);
    None if it holds them (upgraded)."""


async def attack(server: ServerProcess, count: int, idle_fds: int) -> Reading:
    """Send the heads; read the server while the clients stay connected."""
    answers: Counter[str] = Counter()
    loaded, release = trio.Event(), trio.Event()
    cpu = server.cpu_seconds()
    after_linger = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_heads, server.port, count, answers, loaded, release)
        await loaded.wait()
        cpu = server.cpu_seconds() - cpu
        held = await trio.to_thread.run_sync(server.settled_rss)
        fds = server.open_files()
        if "101" not in answers:  # refused: the server lingers 2 s for the client's EOF
            await trio.to_thread.run_sync(server.wait_open_files, idle_fds)
            after_linger = await trio.to_thread.run_sync(server.settled_rss)
        release.set()
    return Reading(answers, cpu, held, fds, after_linger)


def measure(tree: Path, count: int) -> str:
    limits = {"nofile": count + 1024, "max_connections": count + 100}
    with run_server("corral", tree=tree, **limits) as server:
        rest = server.settled_rss()
        reading = trio.run(attack, server, count, server.open_files())
    answered = ", ".join(f"{status} x {n:,}" for status, n in sorted(reading.answers.items()))
    lines = [
        f"{count:,} heads of {HEADERS:,} tiny headers ({len(tiny_headers_head(0)):,} bytes) "
        f"to the echo of {tree}",
        f"  answers: {answered}",
        f"  RSS at rest {rest / MB:.1f} MB; every head answered, every client connected: "
        f"{reading.held / MB:.1f} MB ({(reading.held - rest) / count / 1e3:.1f} KB per "
        f"connection; the server holds {reading.fds:,} descriptors)",
    ]
    if reading.after_linger is not None:
        lines.append(
            f"  once the server has closed the refused connections: "
            f"{reading.after_linger / MB:.1f} MB"
        )
    lines.append(f"  server CPU per head: {reading.cpu / count * 1e3:.2f} ms")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "200 connections", "1,000")
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout to serve")
    args = parser.parse_args(argv)
    count = args.connections or (200 if args.quick else 1_000)
    raise_nofile(count + 1024)
    return print_report("header_memory", lambda: measure(args.tree.resolve(), count))


if __name__ == "__main__":
    sys.exit(main())
