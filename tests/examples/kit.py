"""What the example tests add to the server kit (``tests.server.kit``, where their servers
run): a client that speaks the examples' JSON, and the chat's join step."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
from trio_websocket import WebSocketConnection, wrap_client_stream

from tests.server.kit import HOST, WAIT, Served, client, tcp_client, until_quiet


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

    async def drain(self, seconds: float | None = None) -> list[dict[str, Any]]:
        """Every frame that arrives until all is quiet (see ``until_quiet``: the server has
        nothing more to send), decoded; or within ``seconds`` of the test's clock if given."""
        return [json.loads(message) for message in await self._arriving(seconds)]

    async def nothing_more(self, seconds: float | None = None) -> None:
        """Check that no frame arrives before all is quiet (or within ``seconds``)."""
        arrived = await self._arriving(seconds)
        assert not arrived, f"unexpected frames: {arrived!r}"

    async def _arriving(self, seconds: float | None) -> list[str | bytes]:
        """The frames that arrive until all is quiet, or until ``seconds`` have passed."""
        deadline = None if seconds is None else trio.current_time() + seconds
        arrived: list[str | bytes] = []
        while True:
            message = None
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_cancel_when_done, nursery.cancel_scope, deadline)
                message = await self.ws.get_message()  # cancelled when done waiting
                nursery.cancel_scope.cancel()
            if message is None:
                return arrived
            arrived.append(message)


async def _cancel_when_done(scope: trio.CancelScope, deadline: float | None) -> None:
    """Cancel ``scope`` once all is quiet, or at ``deadline`` (on the test's clock)."""
    if deadline is None:
        await until_quiet()
    else:
        await trio.sleep_until(deadline)
    scope.cancel()


@asynccontextmanager
async def connect(served: Served, path: str) -> AsyncIterator[Client]:
    """A client connected to ``path`` on the server."""
    async with client(served.url(path)) as ws:
        yield Client(ws)


async def join(client: Client, nick: str) -> dict[str, Any]:
    """Join as ``nick``; check the answer (history, members with ``nick``, own joined: the
    presence diff that brings it may announce others who came and went in the same interval
    first).

    Returns the history frame.
    """
    await client.send(type="join", nick=nick)
    history = await client.receive()
    assert history["type"] == "history", history
    members = await client.receive()
    assert members["type"] == "members" and nick in members["nicks"], members
    while (frame := await client.receive()) != {"type": "joined", "nick": nick}:
        assert frame["type"] in ("joined", "left"), frame
    return history


@asynccontextmanager
async def member(served: Served, room: str, nick: str) -> AsyncIterator[Client]:
    """A client that has joined ``room`` as ``nick``."""
    async with connect(served, f"/ws/{room}") as joined:
        await join(joined, nick)
        yield joined


@asynccontextmanager
async def connect_over(
    served: Served, path: str, *, source: str | None = None, receive_buffer: int | None = None
) -> AsyncIterator[tuple[Client, trio.SocketStream]]:
    """A client on a TCP stream the test holds, so that it can drop TCP without a close frame;
    from the local address ``source`` if given (127.0.0.2...: another client address), with a
    small ``receive_buffer`` if given (a slow reader)."""
    tcp = tcp_client(served.port, source=source, receive_buffer=receive_buffer)
    async with tcp as stream, trio.open_nursery() as nursery:
        ws = await wrap_client_stream(nursery, stream, HOST, path)
        yield Client(ws), stream
        await trio.aclose_forcefully(stream)
