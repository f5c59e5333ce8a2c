"""A kit for testing whole servers over real sockets on 127.0.0.1.

- ``running(app)`` runs ``Server(app)`` on a free port and yields a ``Served`` (its URLs,
  its actors); on exit it drains the server. Every in-process server in the tests starts here.
- ``serving(app)`` is ``running(app)`` that also checks, on exit, that no socket to or from
  the server is left open.
- ``Recorded`` is a handler base class that records every ``terminate`` call in a
  ``Terminations`` log, which tests wait on (no sleeps).
- ``RawClient`` speaks WebSocket with wsproto over a plain TCP stream, and can also write
  hand-built frames (``frame``) for what a well-behaved client never sends.
"""

from __future__ import annotations

import gc
import struct
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import h11
import psutil
import pytest
import trio
import wsproto.events as ev
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url
from wsproto import ConnectionType, WSConnection

from server import App, Request, ServerOptions, TerminateReason, WebSocketHandler
from server.serve import Server

HOST = "127.0.0.1"
"""Where every test server listens and every test client connects."""
WAIT = 10.0
"""Generous bound on every wait for the server: a bug fails the test instead of hanging it."""


@attrs.frozen
class Served:
    """A running server: its ``Server`` object and where it listens."""

    server: Server
    port: int

    def url(self, path: str = "/") -> str:
        """The ``ws://`` URL of ``path`` on this server."""
        return f"ws://{HOST}:{self.port}{path}"

    def live_actors(self) -> int:
        """Actors alive on the server's node (root, supervisors, listener, connections)."""
        assert self.server.node is not None
        return len(self.server.node.actors())

    def connections(self) -> int:
        """Connection actors the server's dynamic supervisor runs now."""
        return self.server.connections.count_children()


@asynccontextmanager
async def running(app: App, options: ServerOptions | None = None) -> AsyncIterator[Served]:
    """Run ``app`` on 127.0.0.1 (free port) until the block ends, then drain it."""
    server = Server(app, host=HOST, port=0, options=options)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.run)
        try:
            yield Served(server, port)
        finally:
            with trio.CancelScope(shield=True), trio.fail_after(WAIT + 30):
                await server.shutdown()
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def serving(app: App, options: ServerOptions | None = None) -> AsyncIterator[Served]:
    """``running(app, options)``, then fail if a socket to or from the server is left open."""
    async with running(app, options) as served:
        yield served
    server_side = [conn for conn in open_sockets(served.port) if conn.laddr.port == served.port]
    assert not server_side, f"the server left sockets open: {server_side}"
    gc.collect()  # trio-websocket's client drops a refused handshake's socket unclosed
    client_side = open_sockets(served.port)
    assert not client_side, f"clients left sockets open: {client_side}"


def open_sockets(port: int) -> list[Any]:
    """This process's TCP sockets bound to or connected to ``port``."""
    return [
        conn
        for conn in psutil.Process().net_connections(kind="tcp")
        if (conn.laddr and conn.laddr.port == port) or (conn.raddr and conn.raddr.port == port)
    ]


@asynccontextmanager
async def client(url: str, **options: Any) -> AsyncIterator[WebSocketConnection]:
    """trio-websocket's client, closing its TCP stream on the way out.

    trio-websocket 0.12.2's client leaves the stream open (until garbage collection) when
    the server closed first: ``aclose`` returns early once a close reason is known.
    """
    stream: trio.abc.Stream | None = None
    try:
        async with open_websocket_url(url, **options) as ws:
            stream = ws._stream
            yield ws
    finally:
        if stream is not None:
            await trio.aclose_forcefully(stream)


async def expect_close(ws: WebSocketConnection) -> tuple[int, str | None]:
    """Read (discarding messages) until the server closes; the code and reason the client saw."""
    with trio.fail_after(WAIT), pytest.raises(ConnectionClosed) as closed:
        while True:
            await ws.get_message()
    reason = closed.value.reason
    assert reason is not None
    return reason.code, reason.reason


@attrs.define
class Termination:
    """One ``terminate(reason, request, state)`` call."""

    reason: TerminateReason
    request: Request
    state: Any


class Terminations:
    """Every terminate call of the handlers that share this log, in order."""

    def __init__(self) -> None:
        self.calls: list[Termination] = []
        self._changed = trio.Event()

    def record(self, call: Termination) -> None:
        self.calls.append(call)
        self._changed.set()
        self._changed = trio.Event()

    async def wait(self, count: int = 1) -> list[Termination]:
        """Wait until ``count`` connections have terminated (fails after ``WAIT``)."""
        with trio.fail_after(WAIT):
            while len(self.calls) < count:
                await self._changed.wait()
        return self.calls

    async def one(self) -> Termination:
        """Wait for the single terminate call a test expects, and return it."""
        calls = await self.wait(1)
        assert len(calls) == 1, calls
        return calls[0]

    @property
    def reasons(self) -> list[TerminateReason]:
        return [call.reason for call in self.calls]


class Recorded(WebSocketHandler[Any]):
    """A handler that records its terminate calls; tests subclass it and add callbacks."""

    def __init__(self, log: Terminations) -> None:
        self.log = log

    def terminate(self, reason: TerminateReason, request: Request, state: Any) -> None:
        self.log.record(Termination(reason, request, state))


def factory(handler: type[Recorded], log: Terminations, *args: Any) -> Any:
    """A handler factory for a route: each connection gets ``handler(log, *args)``."""
    return lambda: handler(log, *args)


# ---- raw WebSocket client ----------------------------------------------------------------


def frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, masked: bool = True
) -> bytes:
    """One client frame built by hand (masked unless asked not to), valid or not."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask_bit = 0x80 if masked else 0
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", first, mask_bit | length)
    elif length < 2**16:
        head = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, length)
    if not masked:
        return head + payload
    key = b"\x01\x02\x03\x04"
    return head + key + bytes(byte ^ key[i % 4] for i, byte in enumerate(payload))


class RawClient:
    """A WebSocket client made of wsproto and a TCP stream, for tests that misbehave."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)

    async def send(self, event: ev.Event) -> None:
        """Send a wsproto event (a message, a ping, a close...)."""
        await self.stream.send_all(self.ws.send(event))

    async def send_raw(self, data: bytes) -> None:
        """Write bytes as they are (hand-built frames)."""
        await self.stream.send_all(data)

    async def next_event(self) -> ev.Event:
        """The next event from the server; AssertionError if it closes TCP first."""
        with trio.fail_after(WAIT):
            while True:
                for event in self.ws.events():
                    return event
                data = await self.stream.receive_some()
                assert data, "the server closed TCP"
                self.ws.receive_data(data)

    async def close_event(self) -> ev.CloseConnection:
        """Read (ignoring messages) until the server's close frame."""
        while True:
            event = await self.next_event()
            if isinstance(event, ev.CloseConnection):
                return event

    async def eof(self) -> None:
        """Wait for the server to close TCP (fails on more data or after ``WAIT``)."""
        with trio.fail_after(WAIT):
            while True:
                try:
                    data = await self.stream.receive_some()
                except trio.BrokenResourceError:
                    return  # reset: closed too
                if not data:
                    return
                self.ws.receive_data(data)

    async def aclose(self) -> None:
        await self.stream.aclose()


@asynccontextmanager
async def raw_client(
    port: int,
    path: str = "/",
    *,
    headers: Iterable[tuple[str, str]] = (),
    subprotocols: Iterable[str] = (),
) -> AsyncIterator[RawClient]:
    """Connect and complete the opening handshake with a ``RawClient``."""
    stream = await trio.open_tcp_stream(HOST, port)
    client = RawClient(stream)
    async with stream:
        request = ev.Request(
            host=f"{HOST}:{port}",
            target=path,
            subprotocols=list(subprotocols),
            extra_headers=[(name.encode(), value.encode()) for name, value in headers],
        )
        await client.send(request)
        accepted = await client.next_event()
        assert isinstance(accepted, ev.AcceptConnection), accepted
        yield client


async def http_exchange(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw request bytes, read until the server closes, parse the HTTP response."""
    with trio.fail_after(WAIT):
        async with await trio.open_tcp_stream(HOST, port) as stream:
            await stream.send_all(data)
            received = b""
            while chunk := await stream.receive_some():
                received += chunk
    parser = h11.Connection(h11.CLIENT)
    parser.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    parser.send(h11.EndOfMessage())
    parser.receive_data(received)
    parser.receive_data(b"")
    head = parser.next_event()
    assert isinstance(head, h11.Response), received
    body = b""
    while isinstance(event := parser.next_event(), h11.Data):
        body += event.data
    headers = {name.decode(): value.decode() for name, value in head.headers}
    return head.status_code, headers, body


def get(path: str, *headers: str) -> bytes:
    """A plain HTTP/1.1 GET request head."""
    lines = "".join(f"{header}\r\n" for header in headers)
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n{lines}\r\n".encode()


@asynccontextmanager
async def tcp_client(port: int) -> AsyncIterator[trio.SocketStream]:
    """A bare TCP connection to the server."""
    stream = await trio.open_tcp_stream(HOST, port)
    async with stream:
        yield stream
