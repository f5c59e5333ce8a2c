"""Chat rooms' memory under one client that fills room after room with history and leaves.

The driver (this script) starts ``python bench/chat_rooms_memory.py server`` (the chat app
served as ``corral serve`` does, answering ``stats`` lines on stdin with RSS after
``gc.collect()`` and the rooms running), takes an idle reading, then plays issue 13's attack from
127.0.0.1: for each of ``--rooms`` room names, connect, join, say ``--says`` texts of ``--size``
bytes, close. It prints the RSS before and after, how many rooms still run, how many joins were
refused, and exits. Every wait is bounded; ``--deadline`` bounds the churn.

    python bench/chat_rooms_memory.py --rooms 2000                 # examples.chat:app as is
    python bench/chat_rooms_memory.py --rooms 2000 --lift-peer-quota   # only the history budget

``--lift-peer-quota`` serves the chat with the per-peer room quota lifted, so that what bounds
memory is the history budget alone. To measure other code (an older checkout), put it first on
``PYTHONPATH``: the server role reports which ``examples.chat`` it loaded.
"""

from __future__ import annotations

import argparse
import gc
import json
import signal
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


async def serve(lift_peer_quota: bool) -> None:
    """Serve the chat like ``corral serve``; answer ``stats`` lines on stdin."""
    import examples.chat
    from server.serve import Server

    server = Server(_load_app(lift_peer_quota), host=HOST, port=0)
    process = psutil.Process()

    def stats() -> dict[str, Any]:
        gc.collect()
        node = server.node
        rooms = sum(info.kind == "chat room" for info in node.actors()) if node else None
        return {"rss": process.memory_info().rss, "rooms": rooms}

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


async def run(args: argparse.Namespace) -> None:
    options = ["--lift-peer-quota"] if args.lift_peer_quota else []
    server = await StatsProcess.start(Path(__file__).resolve(), options)
    try:
        listening = await server.next_record()
        port = listening["port"]
        before = await server.stats()
        filled, refused = await churn(port, args.rooms, args.says, args.size, args.deadline)
        after = await server.stats()
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("role", nargs="?", default="driver", choices=["driver", "server"])
    parser.add_argument("--rooms", type=int, default=2000)
    parser.add_argument("--says", type=int, default=50, help="texts per room (history keeps 50)")
    parser.add_argument("--size", type=int, default=4000, help="bytes per text (at most 4096)")
    parser.add_argument("--deadline", type=float, default=300.0, help="seconds of churn, at most")
    parser.add_argument("--lift-peer-quota", action="store_true")
    args = parser.parse_args(argv)
    if args.role == "server":
        sys.path.append(str(ROOT))  # after PYTHONPATH, which may name other code to measure
        trio.run(serve, args.lift_peer_quota)
    else:
        trio.run(run, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
