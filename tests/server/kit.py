"""The one kit for testing whole servers over real sockets on 127.0.0.1: every test package
takes its servers, clients and recorders from here (one module, so one import, though it is
longer than most).

- ``running(app)`` runs ``app`` with ``server.serving`` on a free port and yields a
  ``Served`` (its URLs, its actors); on exit it drains the server. Every in-process server
  in the tests starts here.
- ``running_clean(app)`` is ``running(app)`` that also checks, on exit, that no socket to or from
  the server is left open.
- ``client(url)`` is trio-websocket's connection, opened and closed (socket and all) by the
  exported kit's ``server.testing.open_client``; ``rejection(url)`` is the refusal it gets;
  ``assert_echoes(url)`` is the well-behaved client that shows a server still serves others.
- ``Recorded`` is a handler base class that records every ``terminate`` call in a
  ``Terminations`` log, which tests wait on (no sleeps).
- ``RawClient`` speaks WebSocket with wsproto over a plain TCP stream, and can also write
  hand-built frames (``frame``) for what a well-behaved client never sends, or vanish (``reset``).
- ``http_exchange``, ``get`` and ``upgrade_request`` send hand-written HTTP and parse the answer.
- ``until_quiet()`` waits until everything is blocked: bytes sent have been handled.
"""

from __future__ import annotations

import base64
import logging
import os
import socket
import struct
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

import attrs
import h11
import pytest
import trio
import trio.testing
import wsproto.events as ev
from trio_websocket import ConnectionClosed, ConnectionRejected, WebSocketConnection
from wsproto import ConnectionType, WSConnection
from wsproto.extensions import Extension

from server import App, Request, ServerOptions, TerminateReason, WebSocketHandler
from server.run import embed
from server.run.embed import Running
from server.testing import open_client

HOST = "127.0.0.1"
"""Where every test server listens and every test client connects."""
WAIT = 10.0
"""Generous bound on every wait for the server: a bug fails the test instead of hanging it."""
QUIET_SECONDS = 0.005
"""Real time every task must have been blocked for before ``until_quiet`` (or the
``virtual_clock`` fixture's jump) trusts that nothing is left to happen: loopback delivers
a send at once, so bytes already written have been read and handled by then."""


async def until_quiet() -> None:
    """Wait until the server and the test are all blocked: what was sent has been handled.

    The event to wait on when a test must know the server has taken in bytes that leave no
    trace it can observe (half a frame, a request it is stuck on). Works on either clock and
    never moves the virtual one.
    """
    await trio.testing.wait_all_tasks_blocked(cushion=QUIET_SECONDS)


@attrs.frozen
class Served(Running):
    """A running server (``server.serving``'s ``Running``: ``url``, ``node``, ``port``) with
    what tests ask of it."""

    def live_actors(self) -> int:
        """Actors alive on the server's node (root, supervisors, listener, connections)."""
        return len(self.node.actors())

    def connections(self) -> int:
        """Connection actors the server's dynamic supervisor runs now."""
        return self.server.connections.count_children()

    async def until_no_connections(self) -> None:
        """Wait until every connection actor has ended (fails after ``WAIT``)."""
        with trio.fail_after(WAIT):
            while self.connections():
                await trio.sleep(0.01)


@asynccontextmanager
async def running(app: App, options: ServerOptions | None = None) -> AsyncIterator[Served]:
    """Run ``app`` on 127.0.0.1 (free port) until the block ends, then drain it: the
    exported ``server.serving``, the one way to run a server inside a trio program."""
    async with embed.serving(app, host=HOST, port=0, options=options) as embedded:
        yield Served(embedded.server, embedded.host, embedded.port)


@asynccontextmanager
async def running_clean(app: App, options: ServerOptions | None = None) -> AsyncIterator[Served]:
    """``running(app, options)``, then fail if a socket to or from the server is left open."""
    async with running(app, options) as served:
        yield served
    left = open_sockets(served.port)
    server_side = [sock for sock in left if sock.local[1] == served.port]
    assert not server_side, f"the server left sockets open: {server_side}"
    assert not left, f"clients left sockets open: {left}"


class OpenSocket(NamedTuple):
    """One of this process's TCP sockets: its address, and its peer's (None if unconnected)."""

    local: tuple[Any, ...]
    peer: tuple[Any, ...] | None


def open_sockets(port: int) -> list[OpenSocket]:
    """This process's open TCP sockets bound to or connected to ``port``.

    Read from the process's own descriptors, not the system's connection table: on a machine
    busy with other tests that table holds thousands of sockets and takes long to read.
    """
    found = []
    for fd in _socket_descriptors():
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            continue  # closed meanwhile
        try:
            if sock.type != socket.SOCK_STREAM or sock.family not in (
                socket.AF_INET,
                socket.AF_INET6,
            ):
                continue
            local = sock.getsockname()
            try:
                peer = sock.getpeername()
            except OSError:
                peer = None  # not connected (a listener), or reset
        finally:
            sock.detach()  # the descriptor stays its owner's
        if local[1] == port or (peer is not None and peer[1] == port):
            found.append(OpenSocket(local, peer))
    return found


def _socket_descriptors() -> list[int]:
    """This process's file descriptors that are sockets (Linux: from /proc/self/fd)."""
    descriptors = []
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # the listing's own descriptor, or one closed meanwhile
        if target.startswith("socket:"):
            descriptors.append(int(name))
    return descriptors


@asynccontextmanager
async def client(
    url: str,
    *,
    subprotocols: Iterable[str] = (),
    extra_headers: Iterable[tuple[str, str]] = (),
) -> AsyncIterator[WebSocketConnection]:
    """trio-websocket's connection to ``url``, opened (and closed, socket and all) by the
    exported test kit's ``open_client``."""
    async with open_client(url, subprotocols=subprotocols, headers=extra_headers) as opened:
        yield opened.ws


async def assert_echoes(url: str, message: str = "still here") -> None:
    """A fresh client connects to ``url``, sends ``message`` and gets it back (within ``WAIT``)."""
    with trio.fail_after(WAIT):
        async with client(url) as ws:
            await ws.send_message(message)
            assert await ws.get_message() == message


async def rejection(url: str, **options: Any) -> ConnectionRejected:
    """The refusal a client gets when the server answers its handshake with an HTTP error."""
    with trio.fail_after(WAIT), pytest.raises(ConnectionRejected) as rejected:
        async with client(url, **options):
            pass
    return rejected.value


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
        self.accepted: ev.AcceptConnection | None = None
        """The server's answer to the handshake (subprotocol, extensions), once upgraded."""
        self.received_bytes = 0
        """Bytes read off the wire so far (compressed ones, under permessage-deflate)."""

    async def send(self, event: ev.Event) -> None:
        """Send a wsproto event (a message, a ping, a close...)."""
        await self.stream.send_all(self.ws.send(event))

    async def send_raw(self, data: bytes) -> None:
        """Write bytes as they are (hand-built frames, half frames)."""
        await self.stream.send_all(data)

    async def next_event(self) -> ev.Event:
        """The next event from the server; AssertionError if it closes TCP first."""
        with trio.fail_after(WAIT):
            while True:
                for event in self.ws.events():
                    return event
                data = await self.stream.receive_some()
                assert data, "the server closed TCP"
                self._take(data)

    async def message(self) -> str | bytes:
        """The next whole message, however many frames it came in."""
        parts: list[Any] = []
        while True:
            event = await self.next_event()
            assert isinstance(event, (ev.TextMessage, ev.BytesMessage)), event
            parts.append(event.data)
            if event.message_finished:
                return "".join(parts) if isinstance(event, ev.TextMessage) else b"".join(parts)

    async def close_event(self) -> ev.CloseConnection:
        """Read (ignoring messages) until the server's close frame."""
        while True:
            event = await self.next_event()
            if isinstance(event, ev.CloseConnection):
                return event

    async def eof(self) -> list[ev.Event]:
        """Wait for the server to end TCP (FIN or reset; fails after ``WAIT``).

        Returns the events that were not read yet, in order: what came before the end.
        """
        with trio.fail_after(WAIT):
            while data := await _receive_or_reset(self.stream):
                self._take(data)
        return list(self.ws.events())

    def _take(self, data: bytes) -> None:
        self.received_bytes += len(data)
        self.ws.receive_data(data)

    def reset(self) -> None:
        """Vanish: abort TCP with RST (SO_LINGER 0), no close frame."""
        linger = struct.pack("ii", 1, 0)
        self.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        self.stream.socket.close()

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


@asynccontextmanager
async def raw_client(
    port: int,
    path: str = "/",
    *,
    headers: Iterable[tuple[str, str]] = (),
    subprotocols: Iterable[str] = (),
    extensions: Iterable[Extension] = (),
    receive_buffer: int | None = None,
    after_head: bytes = b"",
) -> AsyncIterator[RawClient]:
    """Connect and complete the opening handshake with a ``RawClient``.

    ``extensions`` are offered (``PerMessageDeflate()``); ``receive_buffer`` shrinks the
    client's SO_RCVBUF before it connects (a slow reader); ``after_head`` is written in the
    same write as the request head, before the 101 (early frames, or half of one).
    """
    async with tcp_client(port, receive_buffer=receive_buffer) as stream:
        client = RawClient(stream)
        request = ev.Request(
            host=f"{HOST}:{port}",
            target=path,
            subprotocols=list(subprotocols),
            extensions=list(extensions),
            extra_headers=[(name.encode(), value.encode()) for name, value in headers],
        )
        await client.send_raw(client.ws.send(request) + after_head)
        accepted = await client.next_event()
        assert isinstance(accepted, ev.AcceptConnection), accepted
        client.accepted = accepted
        yield client


@asynccontextmanager
async def tcp_client(
    port: int, *, receive_buffer: int | None = None, source: str | None = None
) -> AsyncIterator[trio.SocketStream]:
    """A bare TCP connection to the server (closed, if still open, on the way out), from the
    local address ``source`` if given (127.0.0.2...: another client address)."""
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    if source is not None:
        await sock.bind((source, 0))
    await sock.connect((HOST, port))
    stream = trio.SocketStream(sock)
    try:
        yield stream
    finally:
        await trio.aclose_forcefully(stream)


# ---- plain HTTP by hand -------------------------------------------------------------------


class HttpAnswer(NamedTuple):
    """A parsed HTTP response: status, headers (lower-case names) and body."""

    status: int
    headers: dict[str, str]
    body: bytes


async def receive_until_closed(stream: trio.SocketStream) -> bytes:
    """Everything the server sends until it ends TCP (FIN or reset; fails after ``WAIT``)."""
    received = b""
    with trio.fail_after(WAIT):
        while chunk := await _receive_or_reset(stream):
            received += chunk
    return received


async def _receive_or_reset(stream: trio.SocketStream) -> bytes:
    """The next bytes from the server; b"" once it has ended TCP, with a FIN or a reset."""
    try:
        return await stream.receive_some()
    except trio.BrokenResourceError:
        return b""


async def http_exchange(port: int, data: bytes) -> HttpAnswer:
    """Send raw request bytes, read until the server closes, parse the HTTP response."""
    async with tcp_client(port) as stream:
        await stream.send_all(data)
        received = await receive_until_closed(stream)
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
    return HttpAnswer(head.status_code, headers, body)


def get(path: str, *headers: str) -> bytes:
    """A plain HTTP/1.1 GET request head."""
    lines = "".join(f"{header}\r\n" for header in headers)
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n{lines}\r\n".encode()


def upgrade_request(path: str = "/", *headers: str, version: str | None = "13") -> bytes:
    """A WebSocket opening handshake with a fresh key; ``version=None`` leaves the version out."""
    key = base64.b64encode(os.urandom(16)).decode()
    upgrade = ["Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}"]
    if version is not None:
        upgrade.append(f"Sec-WebSocket-Version: {version}")
    return get(path, *upgrade, *headers)


def warnings_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the server logged at WARNING or above, but the blocked-loop watchdog's: on a
    loaded machine a task step can take 100 ms of real time whatever the server does, and
    the tests that use this check what the server does."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno >= logging.WARNING and record.name != "corral.server.watchdog"
    ]
