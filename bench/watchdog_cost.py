"""What the blocked-loop watchdog costs per task step, and how many steps an echo round trip
takes: the two figures that give its share of the echo benchmark's server CPU per round trip
without the noise of a whole-server comparison.

1. Two trio tasks each run N bare checkpoints (one task step each), in rounds alternating
   without and with ``server.watchdog.StepTracker`` installed (the watchdog's only per-step
   work: its heartbeat and thread wake a few times per threshold, not per step); CPU time per
   step (medians).
2. corral's echo example runs in-process; a client thread (websockets' sync client: no trio
   task steps) keeps one message in flight per connection; a counting instrument gives the
   task steps per round trip.
3. The same echo, in rounds alternating the watchdog off and on (``ServerOptions``): the CPU
   time of the thread running trio (``time.thread_time``: the server's loop only, not the
   client thread) per round trip, medians.

Run: ``python bench/watchdog_cost.py [--quick]``.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import threading
import time
from pathlib import Path

import attrs
import trio
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from examples.echo import app  # noqa: E402
from server.serve import Server  # noqa: E402
from server.watchdog import StepTracker  # noqa: E402


async def _checkpoints(n: int) -> None:
    for _ in range(n):
        await trio.lowlevel.checkpoint()


async def _step_cost(watch: bool, n: int) -> float:
    """CPU nanoseconds per task step, two tasks of ``n`` checkpoints each."""
    if watch:
        trio.lowlevel.add_instrument(StepTracker())
    started = time.process_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_checkpoints, n)
        nursery.start_soon(_checkpoints, n)
    return (time.process_time() - started) / (2 * n) * 1e9


class _StepCounter(trio.abc.Instrument):
    def __init__(self) -> None:
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps += 1


def _echo_client(port: int, connections: int, trips: int, ready: threading.Event) -> None:
    with contextlib.ExitStack() as stack:
        sockets = [
            stack.enter_context(connect(f"ws://127.0.0.1:{port}/")) for _ in range(connections)
        ]
        for ws in sockets:
            ws.send("warm")
            ws.recv()
        ready.set()
        for _ in range(trips // connections):
            for ws in sockets:
                ws.send("x" * 32)
            for ws in sockets:
                if ws.recv() != "x" * 32:
                    raise RuntimeError("wrong echo")


async def _echo(connections: int, trips: int, watchdog: bool) -> tuple[float, float]:
    """Task steps and server-thread CPU microseconds per echo round trip."""
    threshold = app.options.block_threshold if watchdog else None
    server = Server(app, port=0, options=attrs.evolve(app.options, block_threshold=threshold))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.run)
        ready = threading.Event()
        counter = _StepCounter()
        client = threading.Thread(target=_echo_client, args=(port, connections, trips, ready))
        client.start()
        await trio.to_thread.run_sync(ready.wait)
        trio.lowlevel.add_instrument(counter)
        cpu = time.thread_time()
        await trio.to_thread.run_sync(client.join)
        cpu = time.thread_time() - cpu
        trio.lowlevel.remove_instrument(counter)
        await server.shutdown()
    done = trips // connections * connections
    return counter.steps / done, cpu / done * 1e6


def main(argv: list[str] | None = None) -> int:
    """Print both figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    args = parser.parse_args(argv)
    n, rounds, trips = (20_000, 2, 300) if args.quick else (200_000, 7, 3_000)
    costs: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(rounds):
        for watch in (False, True):
            costs[watch].append(trio.run(_step_cost, watch, n))
    off, on = statistics.median(costs[False]), statistics.median(costs[True])
    print(
        f"task step: {off:,.0f} ns CPU without the watchdog, {on:,.0f} ns with it: "
        f"+{on - off:,.0f} ns per step ({rounds} rounds of 2 x {n:,} steps, medians)"
    )
    for connections in (1, 10):
        steps, cpu_us = trio.run(_echo, connections, trips, False)
        print(f"echo, {connections} connection(s): {steps:.2f} task steps per round trip")
    for connections in (1, 10):
        cpu: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(rounds):
            for watch in (False, True):
                cpu[watch].append(trio.run(_echo, connections, trips, watch)[1])
        off, on = statistics.median(cpu[False]), statistics.median(cpu[True])
        print(
            f"echo, {connections} connection(s): server thread CPU per round trip "
            f"{off:.1f} us without the watchdog, {on:.1f} us with it: {on / off:.3f}x "
            f"({rounds} rounds of {trips:,} round trips, medians)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
