"""``call``'s round trip against a hand-rolled send-and-receive pair, in one process and run.

The hand-rolled pair: the caller, an actor, sends ``(its address, n)`` to a plain actor that
sends ``n`` back, and receives it from its own mailbox (no reference, no monitor, no timeout:
what code without ``call`` writes). The call: the same caller calls a ``GenServer`` whose
``handle_call`` answers ``n`` (a port, a monitor of the callee and a timeout per call). Rounds
alternate between the two; each prints CPU microseconds per round trip, and the median ratio
is checked against the target (call within 1.5x of the pair).

Run: ``python bench/call_roundtrip.py [--count N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import actors  # noqa: E402

TARGET = 1.5
"""call's CPU per round trip may be at most this many times the hand-rolled pair's."""


class _Echo(actors.GenServer[None]):
    def handle_call(self, request: Any, caller: actors.Caller, state: None) -> Any:
        return request, state


async def _echo(actor: actors.Actor) -> None:
    async for reply_to, n in actor:
        actor.send(reply_to, n)


async def _by_hand(actor: actors.Actor, echo: actors.Address, count: int) -> None:
    me = actor.address
    for n in range(count):
        actor.send(echo, (me, n))
        assert await actor.receive() == n


async def _by_call(actor: actors.Actor, server: actors.Address, count: int) -> None:
    for n in range(count):
        assert await actors.call(server, n) == n


async def _cpu_us_per_trip(
    node: actors.Node, body: Any, target: actors.Address, count: int
) -> float:
    async with trio.open_nursery() as nursery:
        start = time.process_time()
        caller = node.spawn(nursery, body, target, count)
        reason = await node.wait(caller)
        spent = time.process_time() - start
    assert reason == actors.NORMAL, reason
    return spent / count * 1e6


async def main(count: int, rounds: int) -> None:
    async with actors.open_node("bench") as node, trio.open_nursery() as nursery:
        echo = node.spawn(nursery, _echo)
        server = _Echo().spawn(nursery)
        ratios = []
        for number in range(1, rounds + 1):
            by_hand = await _cpu_us_per_trip(node, _by_hand, echo, count)
            by_call = await _cpu_us_per_trip(node, _by_call, server, count)
            ratios.append(by_call / by_hand)
            print(
                f"round {number}: send+receive {by_hand:.2f} µs CPU, call {by_call:.2f} µs CPU "
                f"({by_call / by_hand:.2f}x)"
            )
        nursery.cancel_scope.cancel()
    ratio = statistics.median(ratios)
    verdict = "MET" if ratio <= TARGET else "MISS"
    print(f"call / send+receive, median of {rounds}: {ratio:.2f}x (target <= {TARGET}x) {verdict}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20_000, help="round trips per round")
    parser.add_argument("--rounds", type=int, default=7, help="rounds of each")
    args = parser.parse_args()
    trio.run(main, args.count, args.rounds)
