"""The trio fan-out servers the fan-out benchmark compares, each run as its own process.

- ``corral``: subscribers at ``/sub`` join one group in ``websocket_init``; each text frame the
  publisher sends to ``/pub`` goes out with ``server.broadcast`` (encoded once, pushed to every
  member's outbox, written by each connection's own task).
- ``cowboy``: the same group, done the Cowboy way: the publisher ``actors.publish``es each text
  to the group as a plain message, and each subscriber's ``websocket_info`` returns it as a
  ``Text`` frame (the path a handler takes for every personalised push).
- ``naive``: a bare trio-websocket server that keeps a set of subscribers and, for each publish,
  loops over them calling ``await ws.send_message(text)``.

(websockets' ``broadcast()`` is ``websockets_server.py broadcast``.) Each answers a new
subscriber with a ``joined`` text frame once it is subscribed, so the clients know when the
publisher may start. Run: ``python bench/fanout_server.py corral|cowboy|naive --port N``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import attrs
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import raise_nofile  # noqa: E402

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
from server.run.supervised import Server  # noqa: E402

GROUP = "bench"
VARIANTS = ("corral", "cowboy", "naive", "corral-asgi")
"""``corral-asgi``: corral's, with ``asgi_app.api`` mounted (what an ASGI app beside it costs)."""


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


class CowboyPublisher(WebSocketHandler[None]):
    """Publishes every text it receives to the group as a plain actor message."""

    def websocket_handle(self, frame: Frame, state: Any) -> tuple[None, None]:
        if isinstance(frame, Text):
            actors.publish(GROUP, frame.data)
        return None, None


class CowboySubscriber(Subscriber):
    """Turns each message from the group into a text frame, in ``websocket_info``."""

    def websocket_info(self, message: Any, state: Any) -> tuple[Text, None]:
        return Text(message), None


def corral_app(max_connections: int, *, cowboy: bool = False) -> App:
    """The corral side: a publish route and a subscribe route (``cowboy``: the actor path).

    Subscribers never send, so the idle timeout is off (the naive server has none either):
    a slow round must not turn into closed connections and lost deliveries.
    """
    quiet = ConnectionOptions(idle_timeout=None)
    publisher, subscriber = (
        (CowboyPublisher(), CowboySubscriber()) if cowboy else (Publisher(), Subscriber())
    )
    return App(
        [websocket("/pub", publisher, options=quiet), websocket("/sub", subscriber, options=quiet)],
        options=ServerOptions(max_connections=max_connections, drain_timeout=5.0),
    )


async def serve_corral(port: int, max_connections: int, cowboy: bool, asgi: bool) -> None:
    """Run the corral fan-out server until killed (``asgi``: with the bench's FastAPI app)."""
    app = corral_app(max_connections, cowboy=cowboy)
    if asgi:
        from asgi_app import api

        app = attrs.evolve(app, asgi=api)
    await Server(app, host="127.0.0.1", port=port).run()


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


def main(argv: list[str] | None = None) -> None:
    """``fanout_server.py corral|cowboy|naive --port N [--max-connections M]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant", choices=VARIANTS)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-connections", type=int, default=20_000)
    args = parser.parse_args(argv)
    raise_nofile(args.max_connections + 1024)
    if args.variant in ("corral", "cowboy", "corral-asgi"):
        cowboy, asgi = args.variant == "cowboy", args.variant == "corral-asgi"
        trio.run(serve_corral, args.port, args.max_connections, cowboy, asgi)
    else:
        trio.run(serve_naive, args.port)


if __name__ == "__main__":
    main()
