"""The two servers the fan-out benchmark compares, each run as its own process.

- ``corral``: subscribers at ``/sub`` join one group in ``websocket_init``; each text frame the
  publisher sends to ``/pub`` goes out with ``server.broadcast`` (encoded once, pushed to every
  member's outbox, written by each connection's own task).
- ``naive``: a bare trio-websocket server that keeps a set of subscribers and, for each publish,
  loops over them calling ``await ws.send_message(text)``.

Both answer a new subscriber with a ``joined`` text frame once it is subscribed, so the clients
know when the publisher may start. Run: ``python bench/fanout_server.py corral|naive --port N``.
"""

from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import actors  # noqa: E402
from server import (  # noqa: E402
    App,
    ConnectionOptions,
    Frame,
    ServerOptions,
    Text,
    WebSocketHandler,
    broadcast,
    websocket,
)
from server.serve import Server  # noqa: E402

GROUP = "bench"
VARIANTS = ("corral", "naive")


class Subscriber(WebSocketHandler[None]):
    """Joins the group, says so, then only listens."""

    def websocket_init(self, state: Any) -> tuple[Text, None]:
        actors.join(GROUP)
        return Text("joined"), None


class Publisher(WebSocketHandler[None]):
    """Broadcasts every text frame it receives to the group."""

    def websocket_handle(self, frame: Frame, state: Any) -> tuple[None, None]:
        if isinstance(frame, Text):
            broadcast(GROUP, frame.data)
        return None, None


def corral_app(max_connections: int) -> App:
    """The corral side: a publish route and a subscribe route.

    Subscribers never send, so the idle timeout is off (the naive server has none either):
    a slow round must not turn into closed connections and lost deliveries.
    """
    quiet = ConnectionOptions(idle_timeout=None)
    return App(
        [websocket("/pub", Publisher, options=quiet), websocket("/sub", Subscriber, options=quiet)],
        options=ServerOptions(max_connections=max_connections, drain_timeout=5.0),
    )


async def serve_corral(port: int, max_connections: int) -> None:
    """Run the corral fan-out server until killed."""
    await Server(corral_app(max_connections), host="127.0.0.1", port=port).run()


class NaiveFanout:
    """The bare trio-websocket fan-out: one loop of ``send_message`` per publish."""

    def __init__(self) -> None:
        self.subscribers: set[WebSocketConnection] = set()

    async def handle(self, request: WebSocketRequest) -> None:
        ws = await request.accept()
        if request.path == "/pub":
            await self._publish_from(ws)
        else:
            await self._subscribe(ws)

    async def _publish_from(self, ws: WebSocketConnection) -> None:
        try:
            while True:
                message = await ws.get_message()
                for subscriber in list(self.subscribers):
                    try:
                        await subscriber.send_message(message)
                    except ConnectionClosed:
                        self.subscribers.discard(subscriber)
        except ConnectionClosed:
            return

    async def _subscribe(self, ws: WebSocketConnection) -> None:
        self.subscribers.add(ws)
        try:
            await ws.send_message("joined")
            while True:
                await ws.get_message()
        except ConnectionClosed:
            pass
        finally:
            self.subscribers.discard(ws)


async def serve_naive(port: int) -> None:
    """Run the naive fan-out server until killed."""
    await serve_websocket(NaiveFanout().handle, "127.0.0.1", port, ssl_context=None)


def raise_nofile(wanted: int) -> None:
    """Raise RLIMIT_NOFILE to ``wanted`` (the hard limit too when root, else up to it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(wanted, hard)))
    except (ValueError, PermissionError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def main(argv: list[str] | None = None) -> None:
    """``fanout_server.py corral|naive --port N [--max-connections M]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant", choices=VARIANTS)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-connections", type=int, default=20_000)
    args = parser.parse_args(argv)
    raise_nofile(args.max_connections + 1024)
    if args.variant == "corral":
        trio.run(serve_corral, args.port, args.max_connections)
    else:
        trio.run(serve_naive, args.port)


if __name__ == "__main__":
    main()
