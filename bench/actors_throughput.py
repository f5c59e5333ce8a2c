"""Actor messaging throughput against a bare trio memory-channel loop doing the same work.

Two benchmarks, each a bare/actor pair run interleaved for several rounds in one process
(the machine is shared and noisy, so what counts is the ratio of the medians):

- one-way: a producer sends N messages to a consumer through a bounded queue of the same
  capacity; both producers send without waiting and wait for room only when the queue is
  full (bare: ``send_nowait``, on WouldBlock ``await send``; actor: ``node.send``, on False
  ``await node.send_wait``).
- ping-pong: two tasks bounce one message N times (bare: two memory channels; actor: two
  actors replying with ``actor.send``).

Every run checks that the consumer got every message, in order; a lost or reordered
message is a crash (exit status 1). A missed target is only reported.

Run: ``python bench/actors_throughput.py [--quick] [--rounds R] [--one-way N] [--ping-pong N]``.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import trio

# Importable as ``python bench/actors_throughput.py`` from anywhere, whatever the install.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import actors  # noqa: E402

TARGET = 0.7
"""Issue target: actor throughput at least this fraction of the bare loop's."""

CAPACITY = actors.DEFAULT_CAPACITY
DONE = None
"""Sent after the numbered messages: the consumer stops on it."""

_clock = time.process_time
"""CPU seconds of this process: time the shared machine gives to other processes is not ours."""


@attrs.frozen
class Sizes:
    """How much work one run does, and how many rounds to interleave."""

    one_way: int
    ping_pong: int
    rounds: int


# Many short interleaved rounds beat a few long ones on a shared machine: load drifts over
# seconds, and a pair run back to back sees the same load.
FULL = Sizes(one_way=50_000, ping_pong=12_500, rounds=21)
QUICK = Sizes(one_way=10_000, ping_pong=2_500, rounds=3)


class LostMessage(AssertionError):
    """A run did not deliver every message in order: a runtime bug, not a slow run."""


@attrs.define
class Tally:
    """What a consumer saw: how many messages arrived in the expected order."""

    in_order: int = 0
    out_of_order: int = 0

    def see(self, msg: Any) -> None:
        """Count ``msg``: in order if it is the next number expected."""
        if msg == self.in_order:
            self.in_order += 1
        else:
            self.out_of_order += 1

    def check(self, variant: str, n: int) -> None:
        """Raise LostMessage unless exactly ``n`` messages arrived, all in order."""
        if self.in_order != n or self.out_of_order:
            raise LostMessage(
                f"{variant}: {self.in_order} of {n} messages in order, "
                f"{self.out_of_order} out of order"
            )


# ---- one-way --------------------------------------------------------------------------


async def bare_one_way(n: int) -> float:
    """Seconds for a producer task to push ``n`` messages through a memory channel."""
    send, receive = trio.open_memory_channel[Any](CAPACITY)
    tally = Tally()

    async def produce() -> None:
        for msg in itertools.chain(range(n), (DONE,)):
            try:
                send.send_nowait(msg)
            except trio.WouldBlock:
                await send.send(msg)

    async def consume() -> None:
        while (msg := await receive.receive()) is not DONE:
            tally.see(msg)

    start = _clock()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        nursery.start_soon(produce)
    elapsed = _clock() - start
    tally.check("bare one-way", n)
    return elapsed


async def _producer(actor: actors.Actor, dest: actors.Address, n: int) -> None:
    node = actor.node
    for msg in itertools.chain(range(n), (DONE,)):
        if not node.send(dest, msg):
            await node.send_wait(dest, msg)


async def _consumer(actor: actors.Actor, tally: Tally) -> None:
    while (msg := await actor.receive()) is not DONE:
        tally.see(msg)


async def actor_one_way(n: int) -> float:
    """Seconds for a producer actor to send ``n`` messages to a consumer actor."""
    tally = Tally()
    async with actors.open_node("bench") as node:
        start = _clock()
        async with trio.open_nursery() as nursery:
            # drop_newest (the default) refuses a message into a full mailbox and returns
            # False; the producer then waits for room with send_wait, so none is lost. The
            # mailbox counts each refusal as dropped: that is the full-mailbox path, taken
            # as often as the bare producer's WouldBlock.
            consumer = node.spawn(nursery, _consumer, tally, capacity=CAPACITY)
            node.spawn(nursery, _producer, consumer, n, capacity=CAPACITY)
        elapsed = _clock() - start
    tally.check("actor one-way", n)
    return elapsed


# ---- ping-pong ------------------------------------------------------------------------


async def bare_ping_pong(n: int) -> float:
    """Seconds for two tasks to bounce one message ``n`` times over two memory channels."""
    to_pong, pong_inbox = trio.open_memory_channel[Any](CAPACITY)
    to_ping, ping_inbox = trio.open_memory_channel[Any](CAPACITY)
    tally = Tally()

    async def ping() -> None:
        for msg in range(n):
            to_pong.send_nowait(msg)
            tally.see(await ping_inbox.receive())
        to_pong.send_nowait(DONE)

    async def pong() -> None:
        while (msg := await pong_inbox.receive()) is not DONE:
            to_ping.send_nowait(msg)

    start = _clock()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pong)
        nursery.start_soon(ping)
    elapsed = _clock() - start
    tally.check("bare ping-pong", n)
    return elapsed


async def _ping(actor: actors.Actor, ponger: actors.Address, n: int, tally: Tally) -> None:
    send = actor.send
    send(ponger, actor.address)
    for msg in range(n):
        if not send(ponger, msg):
            raise LostMessage(f"ponger refused message {msg}")
        tally.see(await actor.receive())
    send(ponger, DONE)


async def _pong(actor: actors.Actor) -> None:
    send = actor.send
    pinger = await actor.receive()
    while (msg := await actor.receive()) is not DONE:
        if not send(pinger, msg):
            raise LostMessage(f"pinger refused message {msg}")


async def actor_ping_pong(n: int) -> float:
    """Seconds for two actors to bounce one message ``n`` times."""
    tally = Tally()
    async with actors.open_node("bench") as node:
        start = _clock()
        async with trio.open_nursery() as nursery:
            ponger = node.spawn(nursery, _pong, capacity=CAPACITY)
            node.spawn(nursery, _ping, ponger, n, tally, capacity=CAPACITY)
        elapsed = _clock() - start
    tally.check("actor ping-pong", n)
    return elapsed


# ---- the run --------------------------------------------------------------------------

Variant = Callable[[int], Awaitable[float]]


@attrs.frozen
class Benchmark:
    """A bare/actor pair doing the same work; ``messages`` per run for the rate."""

    name: str
    bare: Variant
    actor: Variant
    n: int
    messages: int


@attrs.frozen
class Result:
    """Median rates of one benchmark over the rounds, and the ratio of those medians."""

    benchmark: Benchmark
    bare_rate: float
    actor_rate: float
    round_ratios: tuple[float, ...]

    @property
    def ratio(self) -> float:
        return self.actor_rate / self.bare_rate


def _timed(variant: Variant, n: int) -> float:
    gc.collect()  # a collection owed by the previous run must not land in this one
    return trio.run(variant, n)


def measure(benchmarks: list[Benchmark], rounds: int) -> list[Result]:
    """Run every pair interleaved, ``rounds`` times, alternating which variant goes first."""
    times: dict[str, tuple[list[float], list[float]]] = {b.name: ([], []) for b in benchmarks}
    for bench in benchmarks:  # warm-up, not counted: imports, caches, first allocations
        _timed(bench.bare, bench.n // 10)
        _timed(bench.actor, bench.n // 10)
    for round_ in range(rounds):
        for bench in benchmarks:
            bare_times, actor_times = times[bench.name]
            if round_ % 2 == 0:
                bare_times.append(_timed(bench.bare, bench.n))
                actor_times.append(_timed(bench.actor, bench.n))
            else:
                actor_times.append(_timed(bench.actor, bench.n))
                bare_times.append(_timed(bench.bare, bench.n))
    results = []
    for bench in benchmarks:
        bare_times, actor_times = times[bench.name]
        results.append(
            Result(
                benchmark=bench,
                bare_rate=bench.messages / statistics.median(bare_times),
                actor_rate=bench.messages / statistics.median(actor_times),
                round_ratios=tuple(b / a for b, a in zip(bare_times, actor_times, strict=True)),
            )
        )
    return results


def report(results: list[Result], rounds: int) -> str:
    """The results table, one line per benchmark, and the delivery line."""
    lines = [
        f"corral actors vs bare trio memory channels: capacity {CAPACITY}, "
        f"{rounds} rounds interleaved, medians, msg/s per CPU-second of this process",
        f"{'benchmark':<28} {'bare msg/s':>12} {'actor msg/s':>12} "
        f"{'actor/bare':>10} {'(rounds)':>13} {'target':>7}  result",
    ]
    for result in results:
        bench = result.benchmark
        spread = f"{min(result.round_ratios):.2f}-{max(result.round_ratios):.2f}"
        verdict = "PASS" if result.ratio >= TARGET else "MISS"
        lines.append(
            f"{bench.name:<28} {result.bare_rate:>12,.0f} {result.actor_rate:>12,.0f} "
            f"{result.ratio:>9.2f}x {spread:>13} {TARGET:>6.2f}x  {verdict}"
        )
    runs = ", ".join(f"{r.benchmark.name.split()[0]} {r.benchmark.n:,}" for r in results)
    lines.append(
        f"delivered: every message, in order, in all {2 * rounds} timed runs of each "
        f"({runs}); 0 lost"
    )
    return "\n".join(lines)


def benchmarks_for(sizes: Sizes) -> list[Benchmark]:
    """The one-way and ping-pong pairs at the given sizes."""
    return [
        Benchmark(
            f"one-way ({sizes.one_way:,} msgs)",
            bare_one_way,
            actor_one_way,
            sizes.one_way,
            sizes.one_way,
        ),
        Benchmark(
            f"ping-pong ({sizes.ping_pong:,} trips)",
            bare_ping_pong,
            actor_ping_pong,
            sizes.ping_pong,
            2 * sizes.ping_pong,
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    """Parse the sizes, run both benchmarks, print the table; 0 unless something crashed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 21, quick 3)")
    parser.add_argument("--one-way", type=int, help="messages per one-way run (default 50000)")
    parser.add_argument("--ping-pong", type=int, help="round trips per run (default 12500)")
    args = parser.parse_args(argv)
    preset = QUICK if args.quick else FULL
    sizes = Sizes(
        one_way=args.one_way or preset.one_way,
        ping_pong=args.ping_pong or preset.ping_pong,
        rounds=args.rounds or preset.rounds,
    )
    results = measure(benchmarks_for(sizes), sizes.rounds)
    print(report(results, sizes.rounds))
    print("(ping-pong counts 2 messages per round trip; ratios are what to compare)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
