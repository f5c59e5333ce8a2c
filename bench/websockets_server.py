"""websockets (asyncio) as a same-run baseline server, run as its own process.

Modes, each at any path unless said otherwise:

- ``echo``: sends every message back as it came (text as text, binary as binary);
- ``idle``: accepts and holds the connection, reading nothing until the client closes;
- ``broadcast``: the fan-out bench's server: a subscriber at ``/sub`` gets a ``joined`` text
  frame once it is in the set, and every message the publisher sends to ``/pub`` goes to all
  subscribers with websockets' ``broadcast()`` (the frame encoded once, written without
  waiting on any one connection).

Keepalive pings are off (``ping_interval=None``): the load clients answer no ping, and corral's
echo sends none either. Compression is not offered by the clients, so none is negotiated.
The server stops on SIGTERM or SIGINT.

Run: ``python bench/websockets_server.py echo|idle|broadcast --port N``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

MODES = ("echo", "idle", "broadcast")
HOST = "127.0.0.1"
MAX_MESSAGE_SIZE = 64 * 2**20
"""As large as corral's echo example takes."""


async def echo(ws: ServerConnection) -> None:
    """Send every message back, text as text, binary as binary."""
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        pass


async def idle(ws: ServerConnection) -> None:
    """Hold the connection until the client goes."""
    await ws.wait_closed()


class Fanout:
    """Subscribers at ``/sub``; each message sent to ``/pub`` is broadcast to all of them."""

    def __init__(self) -> None:
        self.subscribers: set[ServerConnection] = set()

    async def handle(self, ws: ServerConnection) -> None:
        """Route by path: the publisher's messages go out with ``broadcast()``."""
        if ws.request is not None and ws.request.path == "/pub":
            try:
                async for message in ws:
                    broadcast(self.subscribers, message)
            except ConnectionClosed:
                pass
            return
        self.subscribers.add(ws)
        try:
            await ws.send("joined")
            await ws.wait_closed()
        finally:
            self.subscribers.discard(ws)


async def run(mode: str, port: int) -> None:
    """Serve ``mode`` on 127.0.0.1:``port`` until SIGTERM or SIGINT."""
    handler = {"echo": echo, "idle": idle, "broadcast": Fanout().handle}[mode]
    stop = asyncio.get_running_loop().create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set_result, None)
    async with serve(
        handler,
        HOST,
        port,
        ping_interval=None,
        max_size=MAX_MESSAGE_SIZE,
        backlog=1024,
    ):
        await stop


def main(argv: list[str] | None = None) -> int:
    """``websockets_server.py echo|idle|broadcast --port N``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    asyncio.run(run(args.mode, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
