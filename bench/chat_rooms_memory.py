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
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped, unused-ignore]
import trio
from trio_websocket import open_websocket_url

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
MB = 1e6


# ---- the server role ------------------------------------------------------------------------


def _emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


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
        return {"event": "stats", "rss": process.memory_info().rss, "rooms": rooms}

    async def answer_requests() -> None:
        requests = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
        buffer = b""
        async for chunk in requests:
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip() == b"stats":
                    _emit(stats())

    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.run)
            _emit({"event": "listening", "port": port, "chat": examples.chat.__file__})
            nursery.start_soon(answer_requests)
            async for _ in signals:
                break
            with trio.move_on_after(30):
                await server.shutdown()
            nursery.cancel_scope.cancel()


# ---- the driver -----------------------------------------------------------------------------


class ServerProcess:
    """The server role as a subprocess, spoken to over its stdin/stdout."""

    def __init__(self, process: trio.Process) -> None:
        assert process.stdout is not None and process.stdin is not None
        self.process, self._stdout, self._stdin = process, process.stdout, process.stdin
        self._buffer = b""

    @classmethod
    async def start(cls, lift_peer_quota: bool) -> ServerProcess:
        options = ["--lift-peer-quota"] if lift_peer_quota else []
        process = await trio.lowlevel.open_process(
            [sys.executable, str(Path(__file__).resolve()), "server", *options],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        return cls(process)

    async def record(self, timeout: float = 30.0) -> dict[str, Any]:
        with trio.fail_after(timeout):
            while b"\n" not in self._buffer:
                chunk = await self._stdout.receive_some()
                if not chunk:
                    raise RuntimeError("the server process ended")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        decoded: dict[str, Any] = json.loads(line)
        return decoded

    async def stats(self) -> dict[str, Any]:
        await self._stdin.send_all(b"stats\n")
        return await self.record()

    async def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        with trio.move_on_after(40):
            await self.process.wait()
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


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
    server = await ServerProcess.start(args.lift_peer_quota)
    try:
        listening = await server.record()
        port = listening["port"]
        before = await server.stats()
        filled, refused = await churn(port, args.rooms, args.says, args.size, args.deadline)
        after = await server.stats()
    finally:
        await server.stop()
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
