"""The supervised server: one root supervisor over app actors, connections and the listener.

Every accepted TCP connection becomes an actor under the connections supervisor (as Ranch
makes each connection a process): it reads the request head, answers HTTP, or upgrades in
place and runs the WebSocket handler. Shutdown is OTP's reverse start order: the listener
stops accepting, connections close with 1001 in batches (each running terminate), then the
app's actors stop; whatever is left when the drain timeout ends is cancelled.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Awaitable
from functools import partial
from typing import NoReturn

import trio

import actors
from actors import ChildSpec, DynamicSupervisor, Restart, Strategy, Supervisor, topics
from actors.broker_url import parse_broker_url

from ..app import App
from ..engine.endpoint import websocket_endpoint
from ..engine.inflate import InflateBudget
from ..front.asgi_http import AsgiHttp
from ..front.asgi_lifespan import Lifespan, LifespanFailed
from ..front.exposure import exposure_warnings
from ..front.listener import FrontDoor, accept_into, open_listeners
from ..front.router import Router
from ..ops.heap_trim import MALLOC_TRIM, MemoryTrimmer
from ..ops.stats import stats_of
from ..ops.watchdog import watching
from ..options import ServerOptions

logger = logging.getLogger("corral.server")


class CannotListen(Exception):
    """The server cannot listen on its address (the port is taken, the host unknown...)."""

    def __init__(self, host: str, port: int, error: OSError) -> None:
        reason = error.strerror or str(error)
        super().__init__(f"cannot listen on {host}:{port}: {reason}")
        self.error = error


class Server:
    """Runs ``app`` on ``host:port`` until ``shutdown`` (or cancellation)."""

    def __init__(
        self,
        app: App,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        options: ServerOptions | None = None,
        ssl_context: ssl.SSLContext | None = None,
        node_name: str = "local",
        reuse_port: bool = False,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.options = options or app.options
        self.ssl_context = ssl_context
        self.node_name = node_name
        self.reuse_port = reuse_port
        self.connections = DynamicSupervisor(shutdown_batch=self.options.shutdown_batch)
        self.stopped = trio.Event()
        self.lifespan = Lifespan(app.asgi) if app.asgi is not None else None
        self.front_door = FrontDoor(
            Router(app.routes),
            partial(
                websocket_endpoint,
                default_options=self.options.connection,
                inflate_budget=InflateBudget(self.options.inflate_budget),
            ),
            handshake_timeout=self.options.handshake_timeout,
            max_connections=self.options.max_connections,
            max_head_bytes=self.options.max_head_bytes,
            max_headers=self.options.max_headers,
            allowed_origins=self.options.allowed_origins,
            max_connections_per_address=self.options.max_connections_per_address,
            max_heads_per_address=self.options.max_heads_per_address,
            unlimited_addresses=self.options.unlimited_addresses,
            asgi=self._asgi_http(),
        )
        connection = self.options.connection
        self._connection_spec = ChildSpec(
            "connection",
            self._connection_actor,
            restart=Restart.TEMPORARY,
            shutdown=connection.send_timeout + connection.close_timeout,
            capacity=connection.mailbox_capacity,
            overflow=connection.mailbox_overflow,
            kind="connection",
        )
        self.accepted = 0
        """TCP connections accepted so far."""
        self.memory_trimmer = (
            MemoryTrimmer(
                self.options.memory_trim, lambda: self.accepted, self.connections.count_children
            )
            if self.options.memory_trim is not None and MALLOC_TRIM is not None
            else None
        )
        self._listening = trio.Event()
        self.node: actors.Node | None = None
        self._root: actors.Address | None = None
        self._scope = trio.CancelScope()
        self._failure: CannotListen | LifespanFailed | None = None

    def _asgi_http(self) -> AsgiHttp | None:
        """The mounted ASGI app's HTTP side, sharing the lifespan's state (None: no app)."""
        if self.app.asgi is None or self.lifespan is None:
            return None
        return AsgiHttp(
            self.app.asgi,
            self.lifespan.state,
            max_head_bytes=self.options.max_head_bytes,
            max_headers=self.options.max_headers,
        )

    def adopt(self, app: App) -> None:
        """Serve ``app``'s routes from now on (a hot upgrade; its children are not started)."""
        self.app = app
        self.front_door.router = Router(app.routes)

    @property
    def scheme(self) -> str:
        """``ws`` or ``wss``."""
        return "wss" if self.ssl_context is not None else "ws"

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until shut down; ``task_status`` gets the bound port once listening."""
        lifespan = self.lifespan
        root = Supervisor(
            [
                *self.app.children,
                *(() if lifespan is None else (lifespan.child_spec(self.options.drain_timeout),)),
                self.connections.child_spec("connections"),
                ChildSpec("listener", self._listen, shutdown=1.0, kind="listener"),
            ],
            strategy=Strategy.REST_FOR_ONE,
        )
        try:
            with self._scope:
                async with actors.open_node(self.node_name, self._backend()) as node:
                    self.node = node
                    stats = stats_of(node)
                    stats.front_door = self.front_door  # the metrics see the front door
                    async with (
                        topics.serving(self._topics(), node),
                        watching(self.options.block_threshold, stats),
                        trio.open_nursery() as nursery,
                    ):
                        # Names are cluster-wide on Redis: each node's root needs its own.
                        name = "root" if node.backend.node_id is None else f"root:{node.name}"
                        self._root = await nursery.start(partial(actors.supervise, root, name=name))
                        await self._listening.wait()
                        task_status.started(self.port)
        finally:
            self.stopped.set()
        if self._failure is not None:
            raise self._failure

    def _backend(self) -> actors.Backend | None:
        """Redis when the options name one, else the node's embedded default."""
        if self.options.redis_url is None:
            return None
        from actors.backend_redis import RedisBackend  # coredis loads only for a cluster

        return RedisBackend(
            self.options.redis_url,
            prefix=self.options.cluster_prefix,
            startup_wait=self.options.redis_wait,
            heartbeat=self.options.failure_detection / 5,
            lease=self.options.failure_detection,
        )

    def _topics(self) -> topics.TopicEngine:
        """Topics on Redis when the options name one (history outlives this node), else here."""
        if self.options.redis_url is None:
            return topics.LocalTopics()
        if parse_broker_url(self.options.redis_url).cluster:
            logger.warning(
                "topics: on a Redis Cluster each node keeps its topics' history in memory "
                "(the Redis topics engine needs one Redis)"
            )
            return topics.LocalTopics()
        from actors.topics_redis import RedisTopics

        return RedisTopics(self.options.redis_url, prefix=self.options.cluster_prefix)

    async def shutdown(self) -> None:
        """Drain: stop accepting, close connections with 1001, stop the app's actors.

        Returns once the server has stopped; past the drain timeout, what is left is
        cancelled (each upgraded connection still runs terminate).
        """
        if self._root is None or self.node is None:
            self._scope.cancel()
            return
        assert self.node is not None
        self.node.exit(self._root, actors.SHUTDOWN)
        with trio.move_on_after(self.options.drain_timeout):
            await self.stopped.wait()
            logger.info("drained")
            return
        logger.warning(
            "drain timeout (%.3g s) reached: cancelling the rest", self.options.drain_timeout
        )
        self._scope.cancel()
        await self.stopped.wait()  # cancelled connections still run terminate (bounded)

    async def _listen(self, actor: actors.Actor) -> None:
        if self.lifespan is not None:
            try:
                await self.lifespan.ready()  # no client before the ASGI app's startup
            except LifespanFailed as failed:
                await self._fail(failed)
        try:
            if self.reuse_port:
                listeners = await shared_port_listeners(self.host, self.port, self.ssl_context)
            else:
                listeners = await open_listeners(self.host, self.port, self.ssl_context)
        except OSError as exc:  # restarting will not free the port: stop the server instead
            await self._fail(CannotListen(self.host, self.port, exc))
        self.port = bound_port(listeners[0])
        async with trio.open_nursery() as nursery:
            await nursery.start(accept_into, listeners, self._hand_off)
            if self.memory_trimmer is not None:  # trims while accepting, as long as we do
                nursery.start_soon(self.memory_trimmer.run)
            http = "https" if self.ssl_context is not None else "http"
            logger.info(
                "listening on %s://%s:%d (and %s://)", self.scheme, self.host, self.port, http
            )
            for warning in exposure_warnings(self.app.routes, self.host):
                logger.warning("%s", warning)
            self._listening.set()

    async def _fail(self, failure: CannotListen | LifespanFailed) -> NoReturn:
        """Stop the server for good: ``run`` raises ``failure`` (a restart would not help)."""
        self._failure = failure
        self._scope.cancel()
        await trio.sleep_forever()

    def _hand_off(self, stream: trio.abc.Stream) -> None:
        """Give a new TCP connection to its own actor, which owns the stream from now on."""
        self.accepted += 1
        try:
            self.connections.start_child(self._connection_spec, stream)
        except actors.ActorError as exc:
            logger.warning("dropping a new connection: %s", exc)
            _close_now(stream)

    def _connection_actor(self, actor: actors.Actor, stream: trio.abc.Stream) -> Awaitable[None]:
        """The actor's body is the front door's coroutine itself (returned, not awaited here:
        one coroutine frame fewer on every idle connection's stack)."""
        return self.front_door.handle(stream)


async def shared_port_listeners(
    host: str, port: int, ssl_context: ssl.SSLContext | None
) -> list[trio.abc.Listener[trio.abc.Stream]]:
    """Listeners on ``host:port`` with SO_REUSEPORT: several processes share the port and
    the kernel spreads new connections over them (``--workers``)."""
    listeners: list[trio.abc.Listener[trio.abc.Stream]] = []
    for family, kind, proto, _, address in await trio.socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    ):
        sock = trio.socket.from_stdlib_socket(_reuse_port_socket(family, kind, proto))
        try:
            await sock.bind(address)
            sock.listen(socket.SOMAXCONN)
        except BaseException:
            sock.close()
            raise
        tcp = trio.SocketListener(sock)
        listeners.append(
            tcp
            if ssl_context is None
            else trio.SSLListener(tcp, ssl_context, https_compatible=True)
        )
    return listeners


def check_port_shareable(host: str, port: int) -> None:
    """Raise CannotListen unless every address of ``host:port`` can be bound with
    SO_REUSEPORT, as each worker of ``--workers`` will (a port held by another program
    cannot), so that the parent says so once instead of restarting workers that cannot."""
    try:
        for family, kind, proto, _, address in socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        ):
            with _reuse_port_socket(family, kind, proto) as probe:
                probe.bind(address)
    except OSError as exc:
        raise CannotListen(host, port, exc) from exc


def _reuse_port_socket(family: int, kind: int, proto: int) -> socket.socket:
    """A TCP socket that shares its port with the other workers' (SO_REUSEPORT)."""
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    except BaseException:
        sock.close()
        raise
    return sock


def bound_port(listener: trio.abc.Listener[trio.abc.Stream]) -> int:
    """The port a (TLS-wrapped) TCP listener is bound to."""
    if isinstance(listener, trio.SSLListener):
        listener = listener.transport_listener
    assert isinstance(listener, trio.SocketListener)
    return int(listener.socket.getsockname()[1])


def _close_now(stream: trio.abc.Stream) -> None:
    """Close a just-accepted stream's socket without awaiting (nobody will serve it)."""
    transport = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    if isinstance(transport, trio.SocketStream):
        transport.socket.close()
