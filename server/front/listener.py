"""The front door: accept TCP (or TLS), read and route one request head, answer or hand over.

``dispatch`` is the pure decision (answer, call an HTTP handler, or upgrade); ``FrontDoor``
carries it out for one connection under the server's limits; ``serve_tcp`` runs listeners.
WebSocket upgrades go to an injected ``on_websocket`` callback (the connection layer).
"""

from __future__ import annotations

import errno
import inspect
import logging
import os
import socket
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable, Collection
from typing import TypeAlias, cast

import attrs
import trio

from .access_log import log_access, peer_text
from .asgi_http import AsgiHttp
from .handshake import handshake_problem
from .http import (
    DEFAULT_MAX_HEAD_BYTES,
    DEFAULT_MAX_HEADERS,
    HttpError,
    HttpHandler,
    PeerClosed,
    Request,
    Response,
    bad_request,
    close_after_response,
    error_response,
    internal_error,
    method_not_allowed,
    not_found,
    read_request_head,
    send_response,
    service_unavailable,
    too_many_from_address,
    upgrade_required,
)
from .peers import PeerCount, address_group
from .router import MalformedPath, Match, Router

logger = logging.getLogger("corral.server")

DEFAULT_HANDSHAKE_TIMEOUT = 10.0
"""Seconds a client has to send its whole request head (and an HTTP exchange to finish)."""

DEFAULT_MAX_CONNECTIONS = 10_000
"""Open connections past which a new one gets HTTP 503."""

DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 1_000
"""Open connections from one address (IPv6: one /64) past which a new one gets HTTP 429."""

DEFAULT_MAX_HEADS_PER_ADDRESS = 100
"""Unfinished request heads from one address past which a new connection is closed unread."""

LOOPBACK = "loopback"
"""In ``unlimited_addresses``: every loopback address (127.0.0.0/8, ``::1``), i.e. this host."""

DEFAULT_UNLIMITED_ADDRESSES = frozenset({LOOPBACK})
"""Addresses the per-address limits leave alone: this host's, where a reverse proxy (through
which every client comes from one address) and the benchmarks' load clients (from 127.0.0.x
source addresses) connect from."""


def _is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP as a socket gives it) is in 127.0.0.0/8 or is ``::1``."""
    return host.startswith(("127.", "::ffff:127.")) or host == "::1"


Serve: TypeAlias = Callable[[], Awaitable[object]]
"""An accepted WebSocket's life, to await until it ends."""

OnWebSocket: TypeAlias = Callable[[trio.abc.Stream, Request, bytes, Match], Awaitable[Serve | None]]
"""``on_websocket(stream, request, rest, match)``: accept (or refuse) a WebSocket; return its
life to await (None if refused or gone).

``rest`` holds the bytes the client sent after its request head (its first frames).

The stream is the WebSocket's until that life ends: the connection counts against
``max_connections`` until then, and is closed right after.
"""


@attrs.frozen
class Answer:
    """Decision: reply with ``response`` and close (``websocket_route``: the path is a
    WebSocket route's)."""

    response: Response
    websocket_route: bool = False


@attrs.frozen
class CallHttpHandler:
    """Decision: call an HTTP route's handler with the routed request, reply with its response."""

    handler: HttpHandler
    request: Request


@attrs.frozen
class UpgradeWebSocket:
    """Decision: a valid WebSocket handshake on a WebSocket route; hand it to ``on_websocket``."""

    request: Request
    match: Match


@attrs.frozen
class CallAsgi:
    """Decision: no route takes the request; the mounted ASGI app answers it."""

    request: Request


Decision: TypeAlias = Answer | CallHttpHandler | UpgradeWebSocket | CallAsgi


def dispatch(
    router: Router,
    request: Request,
    *,
    allowed_origins: Collection[str] | None = None,
    asgi: bool = False,
) -> Decision:
    """Decide what to do with a request head: 400/404/405/426/403 answers, HTTP, or upgrade;
    with an ``asgi`` app mounted, what no route takes is the app's instead of a 404."""
    try:
        match = router.match(request.path)
    except MalformedPath as exc:
        return Answer(bad_request(str(exc)))
    if match is None:
        if not asgi:
            return Answer(not_found())
        if request.is_websocket_upgrade:  # for the app's WebSocket scope: checked as ours are
            problem = handshake_problem(request, allowed_origins=allowed_origins)
            if problem is not None:
                return Answer(problem)
        return CallAsgi(request)
    routed = request.with_match(match)
    if match.route.kind == "http":
        return CallHttpHandler(cast(HttpHandler, match.route.target), routed)
    if not request.is_websocket_upgrade:
        if request.method in ("GET", "HEAD"):
            return Answer(upgrade_required(), websocket_route=True)
        return Answer(method_not_allowed(["GET"]), websocket_route=True)
    problem = handshake_problem(request, allowed_origins=allowed_origins)
    if problem is not None:
        return Answer(problem, websocket_route=True)
    return UpgradeWebSocket(routed, match)


@attrs.frozen
class FrontDoorStatistics:
    """Connections being served now, and connections refused with 503 so far."""

    active_connections: int
    refused_connections: int


@attrs.define
class FrontDoor:
    """Serves one accepted stream at a time (``handle``) under the server's limits.

    The head must arrive within ``handshake_timeout``; an HTTP exchange (handler and reply)
    must also finish within it. Over ``max_connections`` open connections, a new one reads
    its head and gets 503; over ``max_connections_per_address`` from its address (IPv6: /64),
    429. A new connection from an address with ``max_heads_per_address`` heads still coming
    is closed at once, unread: one address cannot hold every slot with slow heads. Addresses in
    ``unlimited_addresses`` are not counted per address. Every stream is closed when ``handle``
    returns.
    """

    router: Router
    on_websocket: OnWebSocket
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES
    max_headers: int = DEFAULT_MAX_HEADERS
    allowed_origins: Collection[str] | None = None
    max_connections_per_address: int | None = DEFAULT_MAX_CONNECTIONS_PER_ADDRESS
    max_heads_per_address: int | None = DEFAULT_MAX_HEADS_PER_ADDRESS
    unlimited_addresses: Collection[str] = DEFAULT_UNLIMITED_ADDRESSES
    asgi: AsgiHttp | None = None
    """The ASGI app that answers what no route takes (keep-alive HTTP), if one is mounted."""
    answered: Counter[int] = attrs.field(factory=Counter, init=False)
    """Requests answered before any upgrade or HTTP handler (404, 426, 403, 503...), by status."""
    upgrades_refused: Counter[int] = attrs.field(factory=Counter, init=False)
    """Those of them that asked to upgrade or were for a WebSocket route, by status."""
    _active: int = attrs.field(default=0, init=False)
    _refused: int = attrs.field(default=0, init=False)
    _connections_by_address: PeerCount | None = attrs.field(default=None, init=False)
    _heads_by_address: PeerCount | None = attrs.field(default=None, init=False)
    _loopback_unlimited: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        self.unlimited_addresses = frozenset(self.unlimited_addresses)
        self._loopback_unlimited = LOOPBACK in self.unlimited_addresses
        if self.max_connections_per_address is not None:
            self._connections_by_address = PeerCount(self.max_connections_per_address)
        if self.max_heads_per_address is not None:
            self._heads_by_address = PeerCount(self.max_heads_per_address)

    def statistics(self) -> FrontDoorStatistics:
        """A snapshot of the connection counters."""
        return FrontDoorStatistics(self._active, self._refused)

    async def handle(self, stream: trio.abc.Stream) -> None:
        """Serve one connection to its end; log (never raise) its failures; close the stream."""
        peer = _peer(stream)
        group = self.limited_group(peer)
        heads = self._heads_by_address
        if group is not None and heads is not None and not heads.acquire(group):
            self._refused += 1
            logger.debug(
                "closing %s unread: too many unfinished heads from its address", peer_text(peer)
            )
            await trio.aclose_forcefully(stream)
            return
        refusal = self._admit(group)
        admitted = refusal is None
        try:
            upgrade = await self._serve(stream, peer, group, refusal)
            if upgrade is not None:
                # Called here rather than from _serve, so that its frame and the unrouted
                # request are gone while the WebSocket lives.
                decision, rest = upgrade
                serve = await self.on_websocket(stream, decision.request, rest, decision.match)
                del upgrade, decision, rest  # held for the WebSocket's whole life otherwise
                if serve is not None:
                    await serve()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            logger.debug("connection from %s lost: %r", peer_text(_peer(stream)), exc)
        except Exception:
            logger.exception("connection from %s failed", peer_text(_peer(stream)))
        finally:
            if admitted:
                self._active -= 1
                if group is not None and self._connections_by_address is not None:
                    self._connections_by_address.release(group)
            await trio.aclose_forcefully(stream)

    def limited_group(self, peer: tuple[str, int] | None) -> str | None:
        """The address group that ``peer``'s per-address limits count (None: not limited).
        An IPv4-mapped address is unlimited as its IPv4 address is, an IPv6 one as its /64."""
        if peer is None or peer[0] in self.unlimited_addresses:
            return None
        if self._loopback_unlimited and _is_loopback(peer[0]):
            return None
        group = address_group(peer[0])
        return None if group in self.unlimited_addresses else group

    def _admit(self, group: str | None) -> Response | None:
        """Count a new connection in (None) if it is under both limits; else count it refused
        and return its answer: 503 at ``max_connections``, 429 at its address's limit."""
        if self._active >= self.max_connections:
            self._refused += 1
            return service_unavailable()
        by_address = self._connections_by_address
        if group is not None and by_address is not None and not by_address.acquire(group):
            self._refused += 1
            return too_many_from_address()
        self._active += 1
        return None

    async def _serve(
        self,
        stream: trio.abc.Stream,
        peer: tuple[str, int] | None,
        group: str | None,
        refusal: Response | None,
    ) -> tuple[UpgradeWebSocket, bytes] | None:
        """Answer the request, or return the upgrade to run and the bytes after its head."""
        started = trio.current_time()
        try:
            head = await self._read_head(stream, peer, started)
        finally:
            if group is not None and self._heads_by_address is not None:
                self._heads_by_address.release(group)
        if head is None:
            return None
        request, rest = head
        if refusal is not None:
            await self._refuse(stream, request, refusal, started)
            return None
        decision = self._decide(request)
        if isinstance(decision, CallAsgi):
            assert self.asgi is not None
            handed = await self.asgi.serve(stream, request, rest, self._routed)
            if handed is None:
                return None
            (decision, request), rest = handed
            started = trio.current_time()
        if isinstance(decision, UpgradeWebSocket):
            return decision, rest
        if isinstance(decision, CallHttpHandler):
            with trio.move_on_after(self.handshake_timeout) as deadline:
                response = await _call_http_handler(decision)
                await self._reply(stream, request, response, started)
            if deadline.cancelled_caught:
                logger.warning(
                    "%s %s: no answer within %.3g s; closing",
                    request.method,
                    request.path,
                    self.handshake_timeout,
                )
        else:
            upgrade = decision.websocket_route or request.is_websocket_upgrade
            self._count_answer(decision.response.status, upgrade)
            await self._reply(stream, request, decision.response, started)
        return None

    def _decide(self, request: Request) -> Decision:
        """``dispatch`` with this front door's router, origins and ASGI app."""
        return dispatch(
            self.router, request, allowed_origins=self.allowed_origins, asgi=self.asgi is not None
        )

    def _routed(
        self, request: Request
    ) -> tuple[Answer | CallHttpHandler | UpgradeWebSocket, Request] | None:
        """What a request after the ASGI app's on the same connection gets (None: the app)."""
        decision = self._decide(request)
        return None if isinstance(decision, CallAsgi) else (decision, request)

    def _count_answer(self, status: int, refuses_an_upgrade: bool) -> None:
        self.answered[status] += 1
        if refuses_an_upgrade:
            self.upgrades_refused[status] += 1

    async def _refuse(
        self, stream: trio.abc.Stream, request: Request, response: Response, started: float
    ) -> None:
        """Answer a connection refused at admission (503 or 429), and log why."""
        if response.status == 503:
            logger.warning(
                "refusing %s: at max_connections=%d",
                peer_text(request.peer),
                self.max_connections,
            )
        else:
            logger.info(
                "refusing %s: its address is at max_connections_per_address=%s",
                peer_text(request.peer),
                self.max_connections_per_address,
            )
        self._count_answer(response.status, request.is_websocket_upgrade)
        await self._reply(stream, request, response, started)

    async def _read_head(
        self, stream: trio.abc.Stream, peer: tuple[str, int] | None, started: float
    ) -> tuple[Request, bytes] | None:
        """The head and the bytes after it; None after answering or closing a bad or silent
        client."""
        with trio.move_on_after(self.handshake_timeout):
            try:
                return await read_request_head(
                    stream,
                    max_head_bytes=self.max_head_bytes,
                    max_headers=self.max_headers,
                    peer=peer,
                    secure=isinstance(stream, trio.SSLStream),
                )
            except HttpError as exc:
                logger.info("bad request head from %s: %s", peer_text(peer), exc)
                await self._reply(stream, None, error_response(exc), started)
            except PeerClosed:
                logger.debug("%s closed before sending a request head", peer_text(peer))
            return None
        logger.info(
            "closing %s: no request head within %.3g s", peer_text(peer), self.handshake_timeout
        )
        return None

    async def _reply(
        self, stream: trio.abc.Stream, request: Request | None, response: Response, started: float
    ) -> None:
        """Send ``response`` and close the stream gracefully, all within the deadline; then
        log the access line (``accesslog``) of a request that was read whole."""
        sent_at = None
        with trio.move_on_after(self.handshake_timeout):
            await send_response(stream, response, request=request)
            sent_at = trio.current_time()
            await close_after_response(stream)
        if request is not None:
            log_access(request, response.status, (sent_at or trio.current_time()) - started)


async def _call_http_handler(decision: CallHttpHandler) -> Response:
    """Run a sync or async HTTP handler; a crash or a non-Response becomes a logged 500."""
    try:
        result = decision.handler(decision.request)
        if inspect.isawaitable(result):
            result = await result
        if not isinstance(result, Response):
            raise TypeError(f"HTTP handler returned {result!r}, not a Response")
    except Exception:
        logger.exception("HTTP handler for %s failed", decision.request.path)
        return internal_error()
    return result


def _peer(stream: trio.abc.Stream) -> tuple[str, int] | None:
    """The remote (host, port) of a TCP or TLS-over-TCP stream, if it is still known."""
    transport = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    if not isinstance(transport, trio.SocketStream):
        return None
    try:
        address = transport.socket.getpeername()
    except OSError:
        return None
    return str(address[0]), int(address[1])


def make_ssl_context(certfile: str, keyfile: str | None = None) -> ssl.SSLContext:
    """A server TLS context with modern defaults, loaded with this certificate chain and key."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    context.set_alpn_protocols(["http/1.1"])
    return context


async def open_listeners(
    host: str | None, port: int, ssl_context: ssl.SSLContext | None = None
) -> list[trio.abc.Listener[trio.abc.Stream]]:
    """TCP listeners on ``host:port``, TLS-wrapped when ``ssl_context`` is given."""
    tcp = await trio.open_tcp_listeners(port, host=host)
    if ssl_context is None:
        return list(tcp)
    return [trio.SSLListener(listener, ssl_context, https_compatible=True) for listener in tcp]


async def serve_tcp(
    handle: Callable[[trio.abc.Stream], Awaitable[object]],
    *,
    host: str | None,
    port: int,
    ssl_context: ssl.SSLContext | None = None,
    task_status: trio.TaskStatus[
        list[trio.abc.Listener[trio.abc.Stream]]
    ] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``host:port`` until cancelled, running ``handle(stream)`` per connection.

    ``task_status.started`` receives the listeners (port 0 picks a free port: read it from
    ``listeners[0]``). trio closes each stream when its ``handle`` returns.
    """
    listeners = await open_listeners(host, port, ssl_context)
    await trio.serve_listeners(handle, listeners, task_status=task_status)


ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
"""accept(2) failures that mean the server is out of something for a moment: descriptors
(``EMFILE`` this process, ``ENFILE`` the system) or kernel memory (``ENOMEM``, ``ENOBUFS``). The
connection stays in the backlog: accepting pauses 100 ms and tries again."""

DEAD_CONNECTION_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNABORTED",  # the client reset it while it waited in the backlog
        "EPROTO",  # a protocol error on that connection (some systems' ECONNABORTED)
        "EPERM",  # a firewall rule refused it (Linux)
        # Linux passes on the connection's pending network error (accept(2), "Error handling"):
        "ENETDOWN",
        "ENETUNREACH",
        "EHOSTDOWN",
        "EHOSTUNREACH",
        "ENONET",
        "ENOPROTOOPT",
        "EOPNOTSUPP",
    )
    if hasattr(errno, name)
)
"""accept(2) failures that concern the one connection being taken, which is gone: skip it and
accept the next (the listening socket is fine). From the Linux and POSIX accept(2) pages."""

ACCEPT_BATCH = 64
"""Most connections taken from a plain TCP listener's backlog per wake-up."""


async def accept_into(
    listeners: list[trio.abc.Listener[trio.abc.Stream]],
    hand_off: Callable[[trio.abc.Stream], None],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept on every listener until cancelled; ``hand_off`` takes ownership of each stream.

    Unlike ``serve_tcp``, the stream is not closed when ``hand_off`` returns: it belongs to
    whoever took it (a connection actor), which may outlive this accept loop. A plain TCP
    listener's backlog is taken in batches, one wake-up for many connections (trio's
    ``accept`` passes through the scheduler once per connection).
    """
    async with trio.open_nursery() as nursery:
        for listener in listeners:
            if isinstance(listener, trio.SocketListener):
                nursery.start_soon(_accept_batches, listener, hand_off)
            else:
                nursery.start_soon(_accept_loop, listener, hand_off)
        task_status.started()


async def _accept_loop(
    listener: trio.abc.Listener[trio.abc.Stream], hand_off: Callable[[trio.abc.Stream], None]
) -> None:
    async with listener:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                    raise
                await _pause_accepting(exc)
                continue
            hand_off(stream)


async def _accept_batches(
    listener: trio.SocketListener, hand_off: Callable[[trio.abc.Stream], None]
) -> None:
    """Wait until the listening socket is readable, accept up to ``ACCEPT_BATCH`` connections
    without waiting, hand each off; again. Accepts on a duplicate of the socket (a plain
    one, whose ``accept`` does not wait), closed when this ends, as the listener is."""
    async with listener:
        listening = listener.socket
        duplicate = socket.socket(
            listening.family, listening.type, listening.proto, os.dup(listening.fileno())
        )
        with duplicate:
            duplicate.setblocking(False)
            while True:
                await trio.lowlevel.wait_readable(duplicate)
                for _ in range(ACCEPT_BATCH):
                    try:
                        accepted, _ = duplicate.accept()
                    except BlockingIOError:
                        break
                    except OSError as exc:
                        if exc.errno in DEAD_CONNECTION_ERRNOS:
                            continue
                        if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                            raise
                        await _pause_accepting(exc)
                        break
                    hand_off(trio.SocketStream(trio.socket.from_stdlib_socket(accepted)))


async def _pause_accepting(exc: OSError) -> None:
    """Out of descriptors or memory: wait a moment before accepting again."""
    assert exc.errno is not None
    logger.error("accept failed (%s); retrying in 100 ms", errno.errorcode[exc.errno])
    await trio.sleep(0.1)
