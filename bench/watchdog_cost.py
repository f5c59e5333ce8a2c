"""What the blocked-loop watchdog costs an echo, without a whole server's noise.

corral's echo example runs in-process; a client thread (websockets' sync client: no trio task
steps) keeps one message in flight per connection. In rounds alternating the watchdog off and
on (``ServerOptions``): the CPU time of the thread running trio (``time.thread_time``: the
server's loop only) per round trip, medians, and the watchdog's own thread's CPU (its
``pthread_getcpuclockid`` clock). The watchdog adds nothing to a task step: its thread pokes
the loop four times per threshold.

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
from server.run.supervised import Server  # noqa: E402


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


def _watcher_cpu() -> float:
    """CPU seconds of this process's watchdog thread so far (0 if it is not running)."""
    return sum(
        time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        for thread in threading.enumerate()
        if thread.name.startswith("_watch") and thread.ident is not None
    )


async def _echo(connections: int, trips: int, watchdog: bool) -> tuple[float, float]:
    """Server-thread and watchdog-thread CPU microseconds per echo round trip."""
    threshold = app.options.block_threshold if watchdog else None
    server = Server(app, port=0, options=attrs.evolve(app.options, block_threshold=threshold))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.run)
        ready = threading.Event()
        client = threading.Thread(target=_echo_client, args=(port, connections, trips, ready))
        client.start()
        await trio.to_thread.run_sync(ready.wait)
        cpu, watcher = time.thread_time(), _watcher_cpu()
        await trio.to_thread.run_sync(client.join)
        cpu, watcher = time.thread_time() - cpu, _watcher_cpu() - watcher
        await server.shutdown()
    done = trips // connections * connections
    return cpu / done * 1e6, watcher / done * 1e6


def main(argv: list[str] | None = None) -> int:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    args = parser.parse_args(argv)
    rounds, trips = (2, 300) if args.quick else (9, 5_000)
    for connections in (1, 10):
        loop: dict[bool, list[float]] = {False: [], True: []}
        watcher: list[float] = []
        for _ in range(rounds):
            for watch in (False, True):
                loop_us, watcher_us = trio.run(_echo, connections, trips, watch)
                loop[watch].append(loop_us)
                if watch:
                    watcher.append(watcher_us)
        off, on = statistics.median(loop[False]), statistics.median(loop[True])
        print(
            f"echo, {connections} connection(s): server thread CPU per round trip "
            f"{off:.1f} us without the watchdog, {on:.1f} us with it: {on / off:.3f}x; "
            f"the watchdog's thread {statistics.median(watcher):.2f} us "
            f"({rounds} rounds of {trips:,} round trips, medians)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
