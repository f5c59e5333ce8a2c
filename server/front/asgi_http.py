"""An ASGI application's HTTP requests on one connection: keep-alive HTTP/1.1 through h11.

``AsgiHttp.serve`` takes a connection whose first request head the front door read, runs
the app for it, then for each following request on the connection that the front door's
routes leave to the app; one that they take is handed back, and an upgrade goes to the app's
WebSocket scope (``asgi_ws``). Bodies stream both ways: the
app's ``receive()`` reads the socket only when called (answering ``Expect: 100-continue``
first), its ``send()`` writes at once and waits while a slow client is behind. The rules of
what each message means are ``asgi_rules``'; this module only moves bytes and events.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import h11
import trio

import actors

from .access_log import log_access, peer_text
from .asgi_rules import (
    DISCONNECT,
    AfterApp,
    AsgiApp,
    AsgiMisuse,
    ClientGone,
    Message,
    Phase,
    ResponseCycle,
    after_app,
    http_scope,
    request_message,
)
from .asgi_ws import serve_websocket
from .eager_io import receive_bytes, send_eagerly
from .http import (
    DEFAULT_MAX_HEAD_BYTES,
    DEFAULT_MAX_HEADERS,
    HttpError,
    Request,
    Response,
    bad_request,
    close_after_response,
    error_response,
    head_bytes,
    head_too_large,
    refuse,
    request_of,
)

logger = logging.getLogger("corral.server")

DEFAULT_KEEP_ALIVE_TIMEOUT = 5.0
"""Seconds an idle keep-alive connection waits for its next request head (uvicorn's too)."""

_PIPELINE_LIMIT = 64 * 1024
"""Bytes of a pipelined next request kept while watching for a disconnect; past them the
watch stops reading (the client waits for its answer anyway)."""

_UNREAD_LIMIT = 64 * 1024
"""Bytes of a request body the app did not read that are read and dropped to keep the
connection; past them it closes."""

_INTERNAL_ERROR = (
    h11.Response(
        status_code=500,
        headers=[(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"22")],
    ),
    h11.Data(data=b"Internal Server Error\n"),
    h11.EndOfMessage(),
)

T = TypeVar("T")


@attrs.define
class AsgiHttp:
    """Serves an ASGI app's HTTP requests, one connection per ``serve`` call.

    ``state`` is the lifespan scope's state, copied into every request's scope;
    ``responses`` counts the statuses answered, for the metrics.
    """

    app: AsgiApp
    state: dict[str, Any] = attrs.field(factory=dict)
    keep_alive_timeout: float = DEFAULT_KEEP_ALIVE_TIMEOUT
    max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES
    max_headers: int = DEFAULT_MAX_HEADERS
    responses: Counter[int] = attrs.field(factory=Counter, init=False)

    async def serve(
        self,
        stream: trio.abc.Stream,
        request: Request,
        rest: bytes,
        decide: Callable[[Request], T | None],
    ) -> tuple[T, bytes] | None:
        """Serve ``request`` and the ones after it that ``decide`` leaves to the app (None);
        return the first decision it makes otherwise, with the bytes after that head, or None
        once the connection is done (closed by either side, idle, or the server draining)."""
        server = _local_address(stream)
        if request.is_websocket_upgrade:
            await self._websocket(stream, request, rest, server)
            return None
        connection = h11.Connection(h11.SERVER, max_incomplete_event_size=self.max_head_bytes)
        connection.receive_data(head_bytes(request) + rest)
        connection.next_event()  # the request again, as h11 must see it
        actor = _current_actor()
        started = trio.current_time()
        while True:
            if actor is not None:
                actor.trap_exits = True  # a drain now waits for the response
            exchange = _Exchange(connection, stream, ResponseCycle(request.method == "HEAD"))
            await self._run(exchange, request, server, started)
            if actor is not None:
                actor.trap_exits = False
            if exchange.gone:
                return None
            if not await self._keep(connection, stream, actor):
                await close_after_response(stream)
                return None
            connection.start_next_cycle()
            # Eager reads never wait when the client's next request is already here: without
            # this, one busy connection would keep the loop from every other one.
            await trio.lowlevel.checkpoint()
            head = await self._next_request(connection, stream, request)
            if head is None:
                return None
            request, started = head, trio.current_time()
            decision = decide(request)
            rest = bytes(connection.trailing_data[0])
            if decision is not None:
                return decision, rest
            if request.is_websocket_upgrade:
                await self._websocket(stream, request, rest, server)
                return None

    async def _websocket(
        self, stream: trio.abc.Stream, request: Request, rest: bytes, server: tuple[str, int] | None
    ) -> None:
        """The app's WebSocket scope for an upgrade no route takes; the connection ends with it."""
        await serve_websocket(self.app, stream, request, rest, server=server, state=self.state)

    async def _keep(
        self, connection: h11.Connection, stream: trio.abc.Stream, actor: actors.Actor | None
    ) -> bool:
        """Whether the connection may carry another request: not draining, and the request
        finished (what is left of a body the app did not read arrives in time)."""
        if actor is not None and _shutdown_asked(actor):
            return False
        return await _reusable(connection, stream, self.keep_alive_timeout)

    async def _run(
        self, exchange: _Exchange, request: Request, server: tuple[str, int] | None, started: float
    ) -> None:
        """Run the app for one request; answer 500 if it wrote nothing, cut the response if
        it left it unfinished. Its failure never reaches the connection's neighbours."""
        scope = http_scope(request, server=server, state=self.state)
        failed = False
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except Exception:
            failed = True
            if exchange.gone:
                logger.debug("ASGI app stopped on %s %s: client gone", request.method, request.path)
            else:
                logger.exception("ASGI app failed on %s %s", request.method, request.path)
        debt = after_app(exchange.cycle.phase)
        status = exchange.cycle.status
        if debt is AfterApp.ERROR_500:
            status = 500
            if not failed:
                logger.error("ASGI app returned no response to %s %s", request.method, request.path)
            exchange.cycle.phase = Phase.DONE
            if not exchange.gone:
                await exchange.write_or_drop(_INTERNAL_ERROR)
        elif debt is AfterApp.ABORT:
            exchange.gone = True
        self.responses[status] += 1
        log_access(request, status, trio.current_time() - started)

    async def _next_request(
        self, connection: h11.Connection, stream: trio.abc.Stream, previous: Request
    ) -> Request | None:
        """The next request head on a kept-alive connection; None if it closes, idles past
        the keep-alive timeout or sends a bad head (answered 400 or 431, then closed)."""
        secure = previous.scheme in ("https", "wss")
        with trio.move_on_after(self.keep_alive_timeout):
            while True:
                try:
                    event = connection.next_event()
                    if isinstance(event, h11.Request):
                        return request_of(
                            event, peer=previous.peer, secure=secure, max_headers=self.max_headers
                        )
                except h11.RemoteProtocolError as exc:
                    too_large = exc.error_status_hint == 431
                    await _refuse_head(stream, previous, head_too_large() if too_large else None)
                    return None
                except HttpError as exc:
                    await _refuse_head(stream, previous, error_response(exc))
                    return None
                if event is not h11.NEED_DATA:
                    return None  # closed by the client
                data = await receive_bytes(stream)
                if not data:
                    return None
                connection.receive_data(data)
        return None


async def _refuse_head(stream: trio.abc.Stream, previous: Request, answer: Response | None) -> None:
    """Answer a bad head on a kept-alive connection (400, or ``answer``), then close."""
    response = answer or bad_request("malformed request head")
    logger.info("bad request head from %s: %d", peer_text(previous.peer), response.status)
    await refuse(stream, response)


async def _reusable(connection: h11.Connection, stream: trio.abc.Stream, timeout: float) -> bool:
    """Whether both sides finished the exchange and may start another. A request body the
    app left unread is read (each piece within ``timeout``) and dropped if it ends within
    ``_UNREAD_LIMIT`` bytes; the end of an empty one is usually here already."""
    dropped = 0
    while connection.their_state is h11.SEND_BODY and dropped <= _UNREAD_LIMIT:
        try:
            event = connection.next_event()
        except h11.RemoteProtocolError:
            return False
        if event is h11.NEED_DATA:
            with trio.move_on_after(timeout):
                data = await receive_bytes(stream)
                if not data:
                    return False
                dropped += len(data)
                connection.receive_data(data)
                continue
            return False
    return connection.our_state is h11.DONE and connection.their_state is h11.DONE


@attrs.define(eq=False)
class _Exchange:
    """One request and its response: the app's ``receive`` and ``send`` for it."""

    connection: h11.Connection
    stream: trio.abc.Stream
    cycle: ResponseCycle
    gone: bool = False
    """The client went away (or the response was cut): the connection closes after."""
    _body_done: bool = False
    _pending: h11.Data | None = None
    _watch: trio.CancelScope | None = None
    _lock: trio.Lock = attrs.field(factory=trio.Lock)

    async def receive(self) -> Message:
        """The next piece of the request body, or ``http.disconnect`` once the client is gone
        or the response complete (waiting for either after the body)."""
        async with self._lock:
            if self.gone or self.cycle.phase is Phase.DONE:
                return DISCONNECT
            if not self._body_done:
                return await self._next_body()
            return await self._wait_gone()

    async def send(self, message: Message) -> None:
        """Carry out one ``http.response.*`` message; ClientGone once the client went away."""
        if self.gone:
            raise ClientGone("the client closed the connection")
        events = self.cycle.on_send(message)
        if events:
            await self._write(events)
        if self.cycle.phase is Phase.DONE and self._watch is not None:
            self._watch.cancel()  # a receive() waiting for a disconnect: the response is done

    async def write_or_drop(self, events: tuple[h11.Event, ...]) -> None:
        """Write ``events`` if the client is still there."""
        try:
            await self._write(list(events))
        except ClientGone:
            logger.debug("client gone before its 500")
        except AsgiMisuse:  # h11 refused the app's own response: it cannot send another
            self.gone = True

    async def _write(self, events: list[h11.Event]) -> None:
        try:
            data = b"".join(self.connection.send(event) or b"" for event in events)
        except h11.LocalProtocolError as exc:
            raise AsgiMisuse(f"the response cannot be sent: {exc}") from None
        try:
            await send_eagerly(self.stream, data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.gone = True
            raise ClientGone("the client closed the connection") from None

    async def _next_body(self) -> Message:
        if self.connection.they_are_waiting_for_100_continue:
            await self._write([h11.InformationalResponse(status_code=100, headers=[])])
        while True:
            event = self._pending or self._next_event()
            self._pending = None
            if isinstance(event, h11.Data):
                after = self._next_event()
                if isinstance(after, h11.EndOfMessage):
                    self._body_done = True
                    return request_message(bytes(event.data), False)
                if isinstance(after, h11.Data):
                    self._pending = after
                return request_message(bytes(event.data), True)
            if isinstance(event, h11.EndOfMessage):
                self._body_done = True
                return request_message(b"", False)
            if event is not h11.NEED_DATA:
                return self._lost()
            data = await receive_bytes(self.stream)
            if not data:
                return self._lost()
            self.connection.receive_data(data)

    def _next_event(self) -> object:
        try:
            return self.connection.next_event()
        except h11.RemoteProtocolError:
            return h11.ConnectionClosed()  # a broken body: the same as a client gone

    async def _wait_gone(self) -> Message:
        """Watch the socket until the client closes it (or the response completes); bytes
        of a pipelined request are kept for the next cycle."""
        with trio.CancelScope() as self._watch:
            kept = 0
            while kept < _PIPELINE_LIMIT:
                data = await receive_bytes(self.stream)
                if not data:
                    return self._lost()
                kept += len(data)
                self.connection.receive_data(data)
            await trio.sleep_forever()
        self._watch = None
        return DISCONNECT

    def _lost(self) -> Message:
        self.gone = True
        return DISCONNECT


def _current_actor() -> actors.Actor | None:
    """The connection's actor, whose exit signals a drain (None outside one: a test)."""
    try:
        return actors.current_actor()
    except actors.NotInActor:
        return None


def _shutdown_asked(actor: actors.Actor) -> bool:
    """Whether an exit signal came while the actor trapped them (the server drains)."""
    while True:
        try:
            message = actor.receive_nowait()
        except trio.WouldBlock:
            return False
        if isinstance(message, actors.Exit):
            return True


def _local_address(stream: trio.abc.Stream) -> tuple[str, int] | None:
    """The (host, port) the connection reached, for the scope's ``server``."""
    transport = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    if not isinstance(transport, trio.SocketStream):
        return None
    try:
        address = transport.socket.getsockname()
    except OSError:
        return None
    return str(address[0]), int(address[1])
