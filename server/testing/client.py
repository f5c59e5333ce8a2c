"""The real-socket side of the test kit: an app on a free port, a trio-websocket client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import trio

from actors.extras import MissingExtra

from ..app import App
from ..commands import Binary, Text
from ..run.embed import Running, serving
from .pushes import ASSERT_TIMEOUT, Pushes

try:
    from trio_websocket import (
        ConnectionClosed,
        ConnectionRejected,
        WebSocketConnection,
        wrap_client_stream,
    )
    from wsproto.utilities import LocalProtocolError  # trio-websocket's own protocol library
except ModuleNotFoundError as missing:
    raise MissingExtra("test", "the test kit (server.testing)") from missing


class Client(Pushes):
    """A trio-websocket client with the kit's assertions; ``ws`` is the connection itself."""

    def __init__(self, ws: WebSocketConnection, running: Running | None = None) -> None:
        super().__init__()
        self.ws = ws
        self.running = running
        """The server ``connect`` started (None for ``open_client``)."""
        self._closed: tuple[int, str | None] | None = None
        self.closing = False
        """Whether the kit has begun closing the connection (``close``, or the block's end)."""

    async def send_text(self, text: str) -> None:
        """Send a text message."""
        await self.ws.send_message(text)

    async def send_binary(self, data: bytes) -> None:
        """Send a binary message."""
        await self.ws.send_message(data)

    async def send_json(self, value: Any) -> None:
        """Send ``value`` encoded as JSON in a text message."""
        await self.ws.send_message(json.dumps(value))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close as a client does (waits for the server's answer)."""
        self.closing = True
        await self.ws.aclose(code, reason)

    async def assert_closed(
        self, code: int | None = None, timeout: float = ASSERT_TIMEOUT
    ) -> tuple[int, str | None]:
        """Wait for the server to close (with ``code``, if given); its code and reason.

        Pushes queued or still arriving before the close are kept for later assertions.
        """
        with trio.move_on_after(timeout):
            while await self._more():
                pass
        assert self._closed is not None, f"the connection is still open after {timeout} s"
        if code is not None:
            assert self._closed[0] == code, f"expected close code {code}, got {self._closed}"
        return self._closed

    async def _more(self) -> bool:
        if self._closed is not None:
            return False
        try:
            message = await self.ws.get_message()
        except ConnectionClosed as closed:
            reason = closed.reason
            self._closed = (reason.code, reason.reason) if reason is not None else (1006, None)
            return False
        self._queued.append(Text(message) if isinstance(message, str) else Binary(message))
        return True

    def _closed_as(self) -> str:
        return "" if self._closed is None else f"{self._closed[0]} {self._closed[1] or ''}"


@asynccontextmanager
async def open_client(
    url: str, *, subprotocols: Iterable[str] = (), headers: Iterable[tuple[str, str]] = ()
) -> AsyncIterator[Client]:
    """Connect a ``Client`` to ``url`` (``ws://`` only); close it and its socket on exit."""
    parts = urlsplit(url)
    assert parts.scheme == "ws" and parts.hostname and parts.port, f"not a ws:// URL: {url}"
    resource = parts.path or "/"
    if parts.query:
        resource += f"?{parts.query}"
    extra = [(name.encode(), value.encode()) for name, value in headers]
    failed: BaseException | None = None  # raised as it is once the nursery is done
    client: Client | None = None
    try:
        async with trio.open_nursery() as nursery:
            stream = await trio.open_tcp_stream(parts.hostname, parts.port)
            try:
                ws = await wrap_client_stream(
                    nursery,
                    stream,
                    f"{parts.hostname}:{parts.port}",
                    resource,
                    subprotocols=list(subprotocols) or None,
                    extra_headers=extra,
                )
                client = Client(ws)
                try:
                    yield client
                except BaseException as exc:
                    failed = exc
                finally:
                    client.closing = True
                    await ws.aclose()
            finally:
                await trio.aclose_forcefully(stream)
    except BaseExceptionGroup as group:
        closing = client is not None and client.closing
        rest = _without_pongs_after_close(group) if closing else group
        if rest is not None:
            refusal = _refusal(rest)
            if refusal is not None:
                raise refusal from None  # the server's answer, not the reader task's group
            if rest is group:
                raise
            raise rest from None
    if failed is not None:
        raise failed


@asynccontextmanager
async def connect(
    app: App,
    path: str = "/",
    *,
    subprotocols: Iterable[str] = (),
    headers: Iterable[tuple[str, str]] = (),
) -> AsyncIterator[Client]:
    """Run ``app`` on a free port (``server.serving``) and connect a ``Client`` to ``path``;
    on exit the client closes and the server drains. ``client.running`` is the server."""
    async with serving(app, port=0) as running:
        async with open_client(
            running.url(path), subprotocols=subprotocols, headers=headers
        ) as client:
            client.running = running
            yield client


def _without_pongs_after_close(
    group: BaseExceptionGroup[BaseException],
) -> BaseExceptionGroup[BaseException] | None:
    """``group`` without trio-websocket's failure to answer a ping that crossed our close.

    Its reader task answers a server's ping even once the client has sent its close, and
    wsproto refuses a pong in that state (``LocalProtocolError: Event Pong(...) cannot be sent
    in state LOCAL_CLOSING``): an open trio-websocket bug,
    https://github.com/python-trio/trio-websocket/issues/184 (fix proposed in its pull
    request 198). The connection was closing anyway; a test whose block passed must pass.
    """
    return group.split(LocalProtocolError)[1]


def _refusal(group: BaseExceptionGroup[BaseException]) -> ConnectionRejected | None:
    """The refusal of the handshake, when that is all that went wrong (trio-websocket raises
    it from its reader task, so it comes wrapped in the nursery's group)."""
    refused, rest = group.split(ConnectionRejected)
    while refused is not None and rest is None and len(refused.exceptions) == 1:
        (only,) = refused.exceptions
        if isinstance(only, ConnectionRejected):
            return only
        if not isinstance(only, BaseExceptionGroup):
            return None
        refused = only
    return None
