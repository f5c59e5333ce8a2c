"""Chat rooms' memory under one client that fills room after room with history and leaves.

The driver (this script) starts ``python bench/chat_rooms_memory.py server`` (the chat app
served as ``corral serve`` does, answering ``stats`` lines on stdin with RSS after
``gc.collect()`` and the rooms running), takes an idle reading, then plays issue 13's attack from
127.0.0.1: for each of ``--rooms`` room names, connect, join, say ``--says`` texts of ``--size``
bytes, close. It prints the RSS before and after, how many rooms still run, how many joins were
refused, and exits. Every wait is bounded; ``--deadline`` bounds the churn.

    python bench/chat_rooms_memory.py --rooms 2000                 # examples.chat:app as is
    python bench/chat_rooms_memory.py --rooms 2000 --lift-peer-quota   # only the history budget
    python bench/chat_rooms_memory.py --rooms 2000 --says 1 --size 20 --lift-peer-quota \
        --redis redis://127.0.0.1:6379 --idle 10        # what idle rooms cost a clustered node

``--lift-peer-quota`` serves the chat with the per-peer room quota lifted, so that what bounds
memory is the history budget alone. ``--redis URL`` runs the server as a cluster node on that
Redis (a fresh key prefix); ``--idle SECONDS`` then leaves the rooms idle that long and prints
the server's CPU (% of one core) and the Redis commands per second meanwhile (EVALSHA apart:
the name claims), from ``INFO commandstats`` (so use a Redis nobody else is loading).
To measure other code (an older checkout), put it first on ``PYTHONPATH``: the server role
reports which ``examples.chat`` it loaded.
"""

from __future__ import annotations

import argparse
import gc
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped, unused-ignore]
import trio
from stats_pipe import StatsProcess, answer_stats_requests, emit
from trio_websocket import open_websocket_url

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
MB = 1e6


# ---- the server role ------------------------------------------------------------------------


def _load_app(lift_peer_quota: bool) -> Any:
    import examples.chat

    if not lift_peer_quota:
        return examples.chat.app
    limits = examples.chat.ChatLimits(room_creation_burst=10**9)
    return examples.chat.make_app(limits=limits)


async def serve(lift_peer_quota: bool, redis: str | None) -> None:
    """Serve the chat like ``corral serve``; answer ``stats`` lines on stdin."""
    import secrets

    import attrs

    import examples.chat
    from server.run.supervised import Server

    app = _load_app(lift_peer_quota)
    options = attrs.evolve(
        app.options, redis_url=redis, cluster_prefix=f"bench-{secrets.token_hex(4)}"
    )
    server = Server(app, host=HOST, port=0, options=options)
    process = psutil.Process()

    def stats() -> dict[str, Any]:
        gc.collect()
        node = server.node
        rooms = sum(info.kind == "chat room" for info in node.actors()) if node else None
        cpu = process.cpu_times()
        return {"rss": process.memory_info().rss, "rooms": rooms, "cpu": cpu.user + cpu.system}

    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.run)
            emit({"event": "listening", "port": port, "chat": examples.chat.__file__})
            nursery.start_soon(answer_stats_requests, stats)
            async for _ in signals:
                break
            with trio.move_on_after(30):
                await server.shutdown()
            nursery.cancel_scope.cancel()


# ---- the driver -----------------------------------------------------------------------------


async def fill_room(port: int, room: str, says: int, size: int) -> bool:
    """Join ``room``, say ``says`` texts, leave; False if the join was refused."""
    text = "x" * size
    url = f"ws://{HOST}:{port}/ws/{room}"
    async with open_websocket_url(url) as ws:
        await ws.send_message(json.dumps({"type": "join", "nick": "filler"}))
        while (answer := json.loads(await ws.get_message()))["type"] != "joined":
            if answer["type"] == "error":
                return False
        for _ in range(says):
            await ws.send_message(json.dumps({"type": "say", "text": text}))
        heard = 0
        while heard < says:
            heard += json.loads(await ws.get_message())["type"] == "said"
    return True


async def churn(port: int, rooms: int, says: int, size: int, deadline: float) -> tuple[int, int]:
    """Fill ``rooms`` rooms, 8 at a time; (filled, refused) when done or at ``deadline``."""
    counts = {"filled": 0, "refused": 0}
    limiter = trio.Semaphore(8)

    async def one(number: int) -> None:
        async with limiter:
            with trio.fail_after(30):
                filled = await fill_room(port, f"bench-{number}", says, size)
            counts["filled" if filled else "refused"] += 1

    with trio.move_on_after(deadline):
        async with trio.open_nursery() as nursery:
            for number in range(rooms):
                nursery.start_soon(one, number)
    return counts["filled"], counts["refused"]


def redis_calls(url: str) -> tuple[int, int]:
    """Commands Redis has run so far: (EVALSHA, all), from ``INFO commandstats``."""
    info = subprocess.run(
        ["redis-cli", "-u", url, "info", "commandstats"], capture_output=True, check=True, text=True
    ).stdout
    calls = {
        line.split(":")[0]: int(line.split("calls=")[1].split(",")[0])
        for line in info.splitlines()
        if line.startswith("cmdstat_")
    }
    return calls.get("cmdstat_evalsha", 0), sum(calls.values())


async def idle_cost(server: StatsProcess, redis: str | None, seconds: float) -> str:
    """The server's CPU, and Redis's commands per second, while the rooms sit idle."""
    await trio.sleep(2.0)  # let the churn's last closes settle
    before, calls_before = await server.stats(), redis_calls(redis) if redis else (0, 0)
    started = trio.current_time()
    await trio.sleep(seconds)
    after, calls_after = await server.stats(), redis_calls(redis) if redis else (0, 0)
    elapsed = trio.current_time() - started
    cpu = 100 * (after["cpu"] - before["cpu"]) / elapsed
    line = f"  idle {elapsed:.1f} s with {after['rooms']} rooms: server CPU {cpu:.1f}% of a core"
    if redis:
        evalsha = (calls_after[0] - calls_before[0]) / elapsed
        total = (calls_after[1] - calls_before[1]) / elapsed
        line += f"; Redis {evalsha:.0f} EVALSHA/s, {total:.0f} commands/s in all"
    return line


async def run(args: argparse.Namespace) -> None:
    options = ["--lift-peer-quota"] if args.lift_peer_quota else []
    options += ["--redis", args.redis] if args.redis else []
    server = await StatsProcess.start(Path(__file__).resolve(), options)
    try:
        listening = await server.next_record()
        port = listening["port"]
        before = await server.stats()
        idle = await idle_cost(server, args.redis, args.idle) if args.idle else None
        filled, refused = await churn(port, args.rooms, args.says, args.size, args.deadline)
        after = await server.stats()
        idle_after = await idle_cost(server, args.redis, args.idle) if args.idle else None
    finally:
        await server.terminate(40)
    grown = (after["rss"] - before["rss"]) / MB
    variant = "per-peer room quota lifted" if args.lift_peer_quota else "examples.chat:app"
    print(f"chat rooms memory ({variant}; chat from {listening['chat']})")
    print(f"  churn: {args.rooms} rooms x {args.says} says of {args.size} bytes from one client")
    print(f"  joins that filled a room: {filled}, refused: {refused}")
    print(f"  RSS idle:        {before['rss'] / MB:8.1f} MB")
    print(f"  RSS after churn: {after['rss'] / MB:8.1f} MB  (+{grown:.1f} MB)")
    print(f"  rooms running:   {after['rooms']}")
    if idle is not None and idle_after is not None:
        print(f"before the churn:\n{idle}\nafter it:\n{idle_after}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("role", nargs="?", default="driver", choices=["driver", "server"])
    parser.add_argument("--rooms", type=int, default=2000)
    parser.add_argument("--says", type=int, default=50, help="texts per room (history keeps 50)")
    parser.add_argument("--size", type=int, default=4000, help="bytes per text (at most 4096)")
    parser.add_argument("--deadline", type=float, default=300.0, help="seconds of churn, at most")
    parser.add_argument("--lift-peer-quota", action="store_true")
    parser.add_argument("--redis", metavar="URL", help="serve as a cluster node on this Redis")
    parser.add_argument(
        "--idle", type=float, default=0.0, metavar="SECONDS", help="measure the idle cost"
    )
    args = parser.parse_args(argv)
    if args.role == "server":
        sys.path.append(str(ROOT))  # after PYTHONPATH, which may name other code to measure
        trio.run(serve, args.lift_peer_quota, args.redis)
    else:
        trio.run(run, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
