"""What two hostile inputs of issue 19 cost the server, on one checkout or two (A/B).

  fragments  4 connections, each sending a 1 MiB text message in 2-byte fragments, to the
             echo example (``examples.echo:app``, 64 MiB max_message_size)
  inflate    20 connections, each holding one unfinished compressed message (a fragment
             of 50 MB of zeros, about 49 KB on the wire), to ``examples.echo:compressed_app``

For each: the server's RSS at rest and at its peak (sampled every 50 ms), the server CPU the
attack cost, the slowest echo a well-behaved client saw meanwhile (a round trip every 20 ms:
what the attack held the loop for), and how each attacker's connection ended.
Everything goes to 127.0.0.1, bounded in count and time (60 s per attack at most).

    python bench/hostile_input.py                                  # this checkout
    python bench/hostile_input.py --quick                          # one attacker each
    python bench/hostile_input.py --trees /work/wt/input-base .   # main, then this branch
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from attack_memory import _drain, connect, frame  # noqa: E402
from common import BenchError, ServerProcess, print_report, run_server  # noqa: E402
from wsclient import TEXT, handshake  # noqa: E402

_LIMIT = 60.0
"""Seconds an attack may last at most."""
_DEFLATE_OFFER = b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"


async def _open(port: int, *, compressed: bool = False) -> trio.SocketStream:
    stream = await connect(port)
    head = handshake(port)
    if compressed:
        head = head[:-2] + _DEFLATE_OFFER + b"\r\n"
    await stream.send_all(head)
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = await stream.receive_some()
        if not chunk:
            raise BenchError("closed during the handshake")
        answer += chunk
    if not answer.startswith(b"HTTP/1.1 101"):
        raise BenchError(f"upgrade refused: {answer.splitlines()[0]!r}")
    if compressed and b"permessage-deflate" not in answer:
        raise BenchError("the server did not accept permessage-deflate")
    return stream


def _close_code(received: bytes) -> str:
    """The code of the close frame at the end of what the server sent, if there is one."""
    at = received.rfind(b"\x88")
    if at < 0 or len(received) < at + 4:
        return "none"
    return str(int.from_bytes(received[at + 2 : at + 4], "big"))


async def fragments(port: int, ends: list[str]) -> None:
    """A 1 MiB text message in 2-byte fragments (8 bytes each on the wire)."""
    stream = await _open(port)
    first, middle = frame(b"ab", TEXT, fin=False), frame(b"ab", 0, fin=False)
    batch = middle * 4096
    received = b""

    async def read() -> None:
        nonlocal received
        try:
            while chunk := await stream.receive_some():
                received += chunk
        except trio.BrokenResourceError:
            pass

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            try:
                await stream.send_all(first)
                for _ in range(2**19 // 4096 - 1):
                    await stream.send_all(batch)
                await stream.send_all(middle * 4094 + frame(b"ab", 0))
                with trio.move_on_after(_LIMIT):
                    while len(received) < 2**20 and _close_code(received[-8:]) == "none":
                        await trio.sleep(0.05)
            except trio.BrokenResourceError:
                pass
            nursery.cancel_scope.cancel()
    finally:
        await trio.aclose_forcefully(stream)
    ends.append("echoed" if len(received) >= 2**20 else f"closed {_close_code(received)}")


@functools.cache
def _deflated_zeros() -> bytes:
    """50 MB of zeros as a non-final permessage-deflate fragment (made once, before timing)."""
    compressor = zlib.compressobj(wbits=-12)
    return compressor.compress(bytes(50_000_000)) + compressor.flush(zlib.Z_SYNC_FLUSH)


async def inflate(port: int, ends: list[str]) -> None:
    """One unfinished compressed message: 50 MB of zeros, held (no final fragment)."""
    stream = await _open(port, compressed=True)
    body = _deflated_zeros()
    try:
        await stream.send_all(bytes([0x42, 0x80 | 127]) + len(body).to_bytes(8, "big"))
        await stream.send_all(b"\0\0\0\0" + body)  # a zero mask: the bytes as they are
        received = b""
        with trio.move_on_after(2.0):  # a refusal comes at once; else the message is held
            received = (await stream.receive_some()) or b""
        ends.append(f"closed {_close_code(received)}" if received else "held")
    except trio.BrokenResourceError:
        ends.append("reset")
    finally:
        await trio.aclose_forcefully(stream)


async def _attack(
    server: ServerProcess, count: int, one: Callable[[int, list[str]], Awaitable[None]]
) -> dict[str, object]:
    good = await _open(server.port)
    worst = 0.0
    ends: list[str] = []
    peak = rest = server.rss()
    cpu = server.cpu_seconds()

    async def probe() -> None:
        nonlocal worst
        ping = frame(b"probe", TEXT)
        while True:
            started = time.perf_counter()
            await good.send_all(ping)
            await _drain(good, 7)
            worst = max(worst, time.perf_counter() - started)
            await trio.sleep(0.02)

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, server.rss())
            await trio.sleep(0.05)

    with trio.move_on_after(_LIMIT + 5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(probe)
            nursery.start_soon(sample)
            async with trio.open_nursery() as attackers:
                for _ in range(count):
                    attackers.start_soon(one, server.port, ends)
            await trio.sleep(0.2)
            nursery.cancel_scope.cancel()
    await trio.aclose_forcefully(good)
    return {
        "rss_mb": (rest / 1e6, peak / 1e6),
        "cpu_s": server.cpu_seconds() - cpu,
        "worst_echo_ms": worst * 1000,
        "ends": sorted(set(ends), key=ends.index),
    }


def measure(tree: Path, *, quick: bool = False) -> list[str]:
    """Both attacks on ``tree``'s server; ``quick``: one attacker each (a smoke run)."""
    _deflated_zeros()  # the client's own work, done before anything is timed
    lines = []
    for name, app, count, one in (
        ("fragments", "examples.echo:app", 1 if quick else 4, fragments),
        ("inflate", "examples.echo:compressed_app", 1 if quick else 20, inflate),
    ):
        with run_server("corral", app=app, tree=tree) as server:
            server.settled_rss()
            got = trio.run(_attack, server, count, one)
        rest, peak = got["rss_mb"]  # type: ignore[misc]
        lines.append(
            f"{tree.name:>14} {name:>9}: RSS {rest:6.1f} -> peak {peak:7.1f} MB "
            f"(+{peak - rest:6.1f}), server CPU {got['cpu_s']:5.2f} s, "
            f"worst good echo {got['worst_echo_ms']:7.1f} ms, attackers: {', '.join(got['ends'])}"  # type: ignore[arg-type]
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--trees", nargs="+", type=Path, default=[Path(__file__).parents[1]])
    parser.add_argument("--quick", action="store_true", help="a smoke run: one attacker each")
    args = parser.parse_args(argv)
    trees = [tree.resolve() for tree in args.trees]
    return print_report(
        "hostile_input",
        lambda: "\n".join(line for tree in trees for line in measure(tree, quick=args.quick)),
    )


if __name__ == "__main__":
    sys.exit(main())
