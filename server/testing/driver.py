"""The in-process driver: one handler's whole life on the connection loop production runs,
with no port and no network.

``init`` runs on a built ``Request`` inside the connection's actor, as the server's endpoint
runs it; then the real ``Connection`` serves one end of a socket pair made in this process.
That end is a plain socket, so the connection runs exactly what it runs for a TCP client: the
same core, the same loop, the same transport (the socket's descriptor, eager reads and writes,
writes held to the end of a task step). The test is the client on the other end: websockets'
Sans-I/O client protocol masks its frames, parses the server's, answers pings and the close
handshake. Timers are the node's, on trio's clock: virtual under a MockClock.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager, nullcontext
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, urlencode

import trio
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side

import actors
from actors import Supervisor
from actors.code import version_of

from ..app import App, WebSocketTarget
from ..commands import Binary, Text
from ..engine.connection import Connection
from ..engine.session import Session
from ..front.handshake import accept
from ..front.http import Request, Response
from ..front.router import Match, Router
from ..handler import Upgrade, WebSocketHandler, call, handler_object
from ..options import ConnectionOptions
from ..termination import TerminateReason
from .pushes import ASSERT_TIMEOUT, Pushes

_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's sample Sec-WebSocket-Key


class Refused(Exception):
    """``init`` refused the upgrade; ``response`` is the HTTP answer it gave."""

    def __init__(self, response: Response) -> None:
        super().__init__(f"init refused the upgrade with HTTP {response.status}")
        self.response = response


def build_request(
    path: str = "/",
    *,
    query: Mapping[str, str | Sequence[str]] | None = None,
    headers: Iterable[tuple[str, str]] = (),
    bindings: Mapping[str, object] | None = None,
    peer: tuple[str, int] | None = ("127.0.0.1", 50000),
) -> Request:
    """A WebSocket upgrade ``Request`` as the server would parse it, for ``init``.

    ``path`` may carry a query (``"/chat?room=a"``); ``query`` adds to it. ``headers`` are
    added to an upgrade's own (a name given replaces the default of that name); ``bindings``
    are what a route pattern would have bound.
    """
    path_part, _, raw_query = path.partition("?")
    pairs = parse_qsl(raw_query, keep_blank_values=True)
    for name, values in (query or {}).items():
        pairs += [(name, values)] if isinstance(values, str) else [(name, v) for v in values]
    parsed: dict[str, tuple[str, ...]] = {}
    for name, value in pairs:
        parsed[name] = (*parsed.get(name, ()), value)
    given = [(name.lower(), value) for name, value in headers]
    names = {name for name, _ in given}
    defaults = [
        ("host", "127.0.0.1"),
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-key", _KEY),
        ("sec-websocket-version", "13"),
    ]
    return Request(
        method="GET",
        target=path_part + (f"?{urlencode(pairs)}" if pairs else ""),
        path=path_part,
        query=parsed,
        headers=tuple([pair for pair in defaults if pair[0] not in names] + given),
        peer=peer,
        scheme="ws",
        bindings=bindings or {},
    )


class Driven(Pushes):
    """A handler's connection run by ``drive``: act as its client, watch its end."""

    def __init__(self, request: Request, node: actors.Node, stream: trio.abc.Stream) -> None:
        super().__init__()
        self.request = request
        """The request ``init`` was given."""
        self.node = node
        """The node the connection's actor runs on."""
        self.upgrade: Upgrade[Any] | None = None
        """``init``'s answer, once it upgraded."""
        self.terminate_reason: TerminateReason | None = None
        """Why the connection ended, as ``terminate`` was told; None while it runs."""
        self._address: actors.Address | None = None
        self._connection: Connection | None = None
        self._stream = stream
        self._protocol = Protocol(Side.CLIENT, max_size=None)
        self._changed = trio.Event()
        self._reader_done = False
        self._decided = trio.Event()
        self._ended = trio.Event()
        self._refusal: Response | BaseException | None = None

    @property
    def address(self) -> actors.Address:
        """The connection actor's address: what ``websocket_info`` listens on."""
        assert self._address is not None
        return self._address

    @property
    def state(self) -> Any:
        """The handler's state as its latest callback returned it."""
        assert self._connection is not None, "init did not upgrade"
        return self._connection.state

    @property
    def close_code(self) -> int | None:
        """The code of the server's close frame (1006 if TCP ended without one); None while
        the connection is open."""
        received = self._protocol.close_rcvd
        if received is not None:
            return int(received.code)
        return 1006 if self._reader_done else None

    @property
    def close_reason(self) -> str | None:
        """The reason in the server's close frame, if one came."""
        received = self._protocol.close_rcvd
        return received.reason if received is not None else None

    async def change_code(
        self, handler: WebSocketHandler[Any], old_version: str | None = None, extra: Any = None
    ) -> Any:
        """Move the connection to ``handler`` (the new code) as a hot upgrade does, and return
        the state its ``code_change(old_version, state, extra)`` gave; from the next event on,
        ``handler`` serves it. ``old_version`` defaults to the running handler's version. What
        ``code_change`` raises is raised here (the server would keep the old code). Call it
        between events, as an upgrade happens."""
        connection = self._connection
        assert connection is not None, "init did not upgrade"
        if old_version is None:
            old_version = version_of(type(connection.handler))
        state = await call(handler.code_change, old_version, connection.state, extra)
        connection.adopt(handler, state)
        return state

    # ---- the client's side --------------------------------------------------------------

    def tell(self, message: Any) -> bool:
        """Send ``message`` to the connection's actor (its ``websocket_info``); never waits."""
        return self.node.send(self.address, message)

    async def send_text(self, text: str) -> None:
        """Send a text message, as a client does (masked)."""
        self._protocol.send_text(text.encode())
        await self._flush()

    async def send_binary(self, data: bytes) -> None:
        """Send a binary message, as a client does (masked)."""
        self._protocol.send_binary(data)
        await self._flush()

    async def send_json(self, value: Any) -> None:
        """Send ``value`` encoded as JSON in a text message."""
        await self.send_text(json.dumps(value))

    async def send_ping(self, data: bytes = b"") -> None:
        """Send a ping (the server's pong is answered by the protocol, not the handler)."""
        self._protocol.send_ping(data)
        await self._flush()

    async def send_raw(self, data: bytes) -> None:
        """Write bytes as they are: a frame no well-behaved client sends (see ``frame``)."""
        await self._write(data)

    async def close(
        self, code: int = 1000, reason: str = "", timeout: float = ASSERT_TIMEOUT
    ) -> TerminateReason:
        """Close as a client does and wait for the connection to end; its terminate reason."""
        if not self._ended.is_set() and self._protocol.close_sent is None:
            self._protocol.send_close(code, reason)
            await self._flush()
        return await self.ended(timeout)

    async def disconnect(self, timeout: float = ASSERT_TIMEOUT) -> TerminateReason:
        """Vanish without a close frame (TCP dropped) and wait for the connection to end."""
        await trio.aclose_forcefully(self._stream)
        return await self.ended(timeout)

    async def ended(self, timeout: float = ASSERT_TIMEOUT) -> TerminateReason:
        """Wait until the connection has ended and ``terminate`` has run; its reason."""
        with trio.move_on_after(timeout):
            await self._ended.wait()
        assert self.terminate_reason is not None, f"the connection still runs after {timeout} s"
        return self.terminate_reason

    async def assert_closed(
        self, code: int | None = None, timeout: float = ASSERT_TIMEOUT
    ) -> TerminateReason:
        """Wait for the server to end the connection (with close ``code``, if given); the
        terminate reason. Pushes still queued are left alone."""
        reason = await self.ended(timeout)
        if code is not None:
            assert self.close_code == code, (
                f"expected close code {code}, got {self.close_code} ({reason})"
            )
        return reason

    # ---- inside ------------------------------------------------------------------------

    async def _shut_down(self) -> None:
        """End the connection as a stopping server does, if it still runs (bounded)."""
        if not self._ended.is_set():
            self.node.exit(self.address, actors.SHUTDOWN)
            with trio.CancelScope(shield=True), trio.move_on_after(ASSERT_TIMEOUT):
                await self._ended.wait()

    async def _more(self) -> bool:
        if self._reader_done:
            return False
        await self._changed.wait()
        return True

    def _closed_as(self) -> str:
        if self.close_code is None:
            return ""
        return f"{self.close_code}, {self.terminate_reason}"

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _flush(self) -> None:
        for data in self._protocol.data_to_send():
            if data:
                await self._write(data)
            else:  # the client's side is done: end its half of the stream
                try:
                    if isinstance(self._stream, trio.abc.HalfCloseableStream):
                        await self._stream.send_eof()
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass

    async def _write(self, data: bytes) -> None:
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the server closed: reading says how

    async def _read(self) -> None:
        """The client's reader: takes the server's frames, answers pings and the close."""
        parts: list[bytes] = []
        text = True
        while True:
            try:
                data = await self._stream.receive_some()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                self._protocol.receive_eof()
                self._reader_done = True
                self._notify()
                return
            self._protocol.receive_data(data)
            for event in self._protocol.events_received():
                if isinstance(event, Frame) and event.opcode in _DATA:
                    parts.append(bytes(event.data))
                    if event.opcode is not Opcode.CONT:
                        text = event.opcode is Opcode.TEXT
                    if event.fin:
                        payload, parts = b"".join(parts), []
                        self._queued.append(Text(payload.decode()) if text else Binary(payload))
            await self._flush()
            self._notify()

    async def _run(
        self,
        actor: actors.Actor,
        handler: WebSocketHandler[Any],
        server_stream: trio.abc.Stream,
        options: ConnectionOptions,
    ) -> None:
        """The connection actor: ``init`` as the endpoint runs it, then the real loop."""
        request = self.request
        try:
            decision = await call(handler.init, request)
            if isinstance(decision, Response):
                self._refusal = decision
                return
            if not isinstance(decision, Upgrade):
                raise TypeError(f"init must return Upgrade(...) or a Response, not {decision!r}")
            accept(request, subprotocol=decision.subprotocol, extra_headers=decision.headers)
        except Exception as exc:
            self._refusal = exc
            return
        finally:
            self._decided.set()
        actor.trap_exits = True
        options = decision.options or options
        actor.mailbox.overflow = options.mailbox_overflow
        session = Session(
            max_message_size=options.max_message_size, max_fragments=options.max_fragments
        )
        self.upgrade = decision
        self._connection = Connection(
            actor, handler, request, options, server_stream, session, decision.state
        )
        try:
            self.terminate_reason = await self._connection.run()
        finally:
            self._ended.set()
            self._notify()


_DATA = (Opcode.CONT, Opcode.TEXT, Opcode.BINARY)


def frame(opcode: Opcode, payload: bytes = b"", *, fin: bool = True) -> bytes:
    """A masked client frame, as the client would send it (for ``send_raw``)."""
    return Frame(opcode, payload, fin).serialize(mask=True)


@asynccontextmanager
async def drive(
    handler: App | WebSocketHandler[Any],
    path: str = "/",
    *,
    query: Mapping[str, str | Sequence[str]] | None = None,
    headers: Iterable[tuple[str, str]] = (),
    bindings: Mapping[str, object] | None = None,
    peer: tuple[str, int] | None = ("127.0.0.1", 50000),
    options: ConnectionOptions | None = None,
) -> AsyncIterator[Driven]:
    """Run one handler's connection for the block, in process, and be its client.

    ``handler`` is a handler object (``MyWsHandler()``), or an ``App``, whose WebSocket route
    for ``path`` gives the handler, its bindings and options, and whose own actors
    (``children``) run for the block. ``init`` gets ``build_request(path, query=,
    headers=, bindings=, peer=)``; a refusal raises ``Refused`` and an exception in ``init``
    is raised as it is. ``options`` are the route's (``init``'s ``Upgrade(options=)``
    replaces them); permessage-deflate is not offered.

    The connection is an actor on the current node if there is one (so the handler reaches
    the test's own actors), else on a node of its own, which is current inside the block: a
    ``drive`` nested in it runs on the same node, and shares the app's actors (a second chat
    member in the same room). Leaving the block ends the connection as a stopping server does
    (1001, ``ServerShutdown()``) if it still runs.
    """
    request = build_request(path, query=query, headers=headers, bindings=bindings, peer=peer)
    app: App | None = None
    if isinstance(handler, App):
        app, (target, match) = handler, _route(handler, request.path)
        request = request.with_match(match)
        options = options or target.options or app.options.connection
        made = target.handler
    else:
        made = handler_object(handler, "drive()")
    options = options or ConnectionOptions()
    client_stream, server_stream = _socket_pair()
    try:
        node: actors.Node | None = actors.current_node()
    except actors.NoNode:
        node = None
    failed: BaseException | None = None  # raised as it is once the nursery is done
    async with actors.open_node("test") if node is None else nullcontext(node) as node:
        driven = Driven(request, node, client_stream)
        async with _app_actors(node, app), trio.open_nursery() as nursery:
            driven._address = node.spawn(
                nursery,
                driven._run,
                made,
                server_stream,
                options,
                capacity=options.mailbox_capacity,
                kind="connection",
            )
            await driven._decided.wait()
            if driven._refusal is None:
                nursery.start_soon(driven._read)
                try:
                    yield driven
                except BaseException as exc:
                    failed = exc
                finally:
                    await driven._shut_down()
            nursery.cancel_scope.cancel()
    if isinstance(driven._refusal, Response):
        raise Refused(driven._refusal)
    if driven._refusal is not None:
        raise driven._refusal
    if failed is not None:
        raise failed


@asynccontextmanager
async def _app_actors(node: actors.Node, app: App | None) -> AsyncIterator[None]:
    """Run ``app``'s own actors for the block, up before its connection as on a server,
    unless an enclosing ``drive`` runs them already; they stop as a server's do."""
    apps_up = _apps_up.setdefault(node, set())
    if app is None or not app.children or id(app) in apps_up:
        yield
        return
    async with trio.open_nursery() as nursery:
        supervisor = partial(actors.supervise, Supervisor(app.children), name="app")
        address = await nursery.start(supervisor)
        apps_up.add(id(app))
        try:
            yield
        finally:
            apps_up.discard(id(app))
            node.exit(address, actors.SHUTDOWN)
            with trio.CancelScope(shield=True), trio.move_on_after(ASSERT_TIMEOUT):
                await node.wait(address)
            nursery.cancel_scope.cancel()


_apps_up: weakref.WeakKeyDictionary[actors.Node, set[int]] = weakref.WeakKeyDictionary()
"""The apps (by id) whose actors a ``drive`` block runs on each node: nested blocks share them."""


def _route(app: App, path: str) -> tuple[WebSocketTarget, Match]:
    """The WebSocket route of ``app`` that ``path`` leads to (LookupError if none)."""
    match = Router(app.routes).match(path)
    if match is None or not isinstance(match.route.target, WebSocketTarget):
        raise LookupError(f"no WebSocket route of the app matches {path!r}")
    return match.route.target, match


def _socket_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    """Two connected sockets in this process (no port, no network): the server's end is a
    plain TCP-like socket, so the connection runs the transport production TCP runs (its
    descriptor, eager reads and writes), not a stream of its own."""
    client, server = trio.socket.socketpair()
    return trio.SocketStream(client), trio.SocketStream(server)
