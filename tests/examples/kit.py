"""A kit for the example tests: a served app on a free port, and a JSON WebSocket client."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
from trio_websocket import WebSocketConnection, open_websocket_url, wrap_client_stream

from server import App
from server.serve import Server

WAIT = 10.0
"""Bound on every wait for the server: a bug fails the test instead of hanging it."""


@asynccontextmanager
async def serving(app: App) -> AsyncIterator[Server]:
    """Run ``app`` on 127.0.0.1 (free port) for the block, then drain it."""
    server = Server(app, host="127.0.0.1", port=0)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        try:
            yield server
        finally:
            with trio.CancelScope(shield=True), trio.fail_after(WAIT):
                await server.shutdown()
            nursery.cancel_scope.cancel()


class Client:
    """A WebSocket client that sends and receives JSON objects."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws

    async def send(self, **message: Any) -> None:
        """Send ``message`` as a JSON text frame."""
        await self.ws.send_message(json.dumps(message))

    async def send_raw(self, data: str | bytes) -> None:
        """Send a frame as is (for bad input)."""
        await self.ws.send_message(data)

    async def receive(self, timeout: float = WAIT) -> dict[str, Any]:
        """The next frame from the server, decoded."""
        with trio.fail_after(timeout):
            message = await self.ws.get_message()
        decoded = json.loads(message)
        assert isinstance(decoded, dict), decoded
        return decoded

    async def receive_type(self, kind: str) -> dict[str, Any]:
        """Skip frames until one of ``kind`` arrives (fails after ``WAIT``)."""
        with trio.fail_after(WAIT):
            while True:
                message = await self.receive(math.inf)
                if message["type"] == kind:
                    return message

    async def drain(self, seconds: float = 0.2) -> list[dict[str, Any]]:
        """Every frame that arrives within ``seconds``, decoded."""
        frames: list[dict[str, Any]] = []
        with trio.move_on_after(seconds):
            while True:
                frames.append(json.loads(await self.ws.get_message()))
        return frames

    async def nothing_more(self, seconds: float = 0.2) -> None:
        """Check that no frame arrives within ``seconds``."""
        with trio.move_on_after(seconds):
            message = await self.ws.get_message()
            raise AssertionError(f"unexpected frame: {message!r}")


@asynccontextmanager
async def connect(server: Server, path: str) -> AsyncIterator[Client]:
    """A client connected to ``path`` on ``server``."""
    async with open_websocket_url(f"ws://127.0.0.1:{server.port}{path}") as ws:
        yield Client(ws)


async def join(client: Client, nick: str) -> dict[str, Any]:
    """Join as ``nick``; check the answer (history, members with ``nick``, own joined).

    Returns the history frame.
    """
    await client.send(type="join", nick=nick)
    history = await client.receive()
    assert history["type"] == "history", history
    members = await client.receive()
    assert members["type"] == "members" and nick in members["nicks"], members
    assert await client.receive() == {"type": "joined", "nick": nick}
    return history


@asynccontextmanager
async def member(server: Server, room: str, nick: str) -> AsyncIterator[Client]:
    """A client that has joined ``room`` as ``nick``."""
    async with connect(server, f"/ws/{room}") as client:
        await join(client, nick)
        yield client


@asynccontextmanager
async def connect_over(
    server: Server, path: str
) -> AsyncIterator[tuple[Client, trio.SocketStream]]:
    """A client on a TCP stream the test holds, so that it can drop TCP without a close frame."""
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    async with trio.open_nursery() as nursery:
        ws = await wrap_client_stream(nursery, stream, "127.0.0.1", path)
        yield Client(ws), stream
        await trio.aclose_forcefully(stream)
