"""The Redis backend: names, groups and messages that span processes and machines.

Each node keeps a local view of the whole cluster (names, groups, live nodes), so reads and
``send`` never wait on the network; what changes goes out through one writer task, in order:

- a message for another node is published on that node's channel (``<prefix>:node:<id>``),
  batched per flush, so messages from one sender arrive in the order they were sent;
- a name is claimed atomically with a Lua script (SET unless a live node holds it); it holds
  as long as its node's ``alive`` lease, which one command per heartbeat renews, however many
  names the node has (an idle chat room costs nothing); if another node won the race, the
  local claimant is stopped with ``Crash(NameTaken)`` (as Erlang's ``global`` resolves a
  clash); a dead node's names can be claimed at once, and the nodes that notice its death
  delete them;
- group memberships live in one set per node (a lease too), and every change, claim and
  heartbeat is announced on ``<prefix>:events``; a node not heard for ``lease`` seconds is
  down: its names and memberships leave the view, and monitors of its actors get
  ``Down(reason=noconnection)``.

On a Redis Cluster (``redis+cluster://`` seed nodes) the node channels use sharded pub/sub
(SSUBSCRIBE, SPUBLISH): each node's channel lives on the shard its name hashes to, so the
messages spread over the shards; names, leases, memberships and the events channel share one
hash tag (one slot: the claim script reads them together). A shard's primary failing over
looks like an outage of that link: what was in flight is counted lost, and the node
reconnects, resubscribes and re-announces as below.

When Redis is unreachable, local delivery carries on; cross-node messages are counted as
lost (``cluster().lost``) and logged; the node reconnects with backoff, resubscribes,
re-claims its names and re-announces its memberships.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import socket
from collections import deque
from collections.abc import Callable
from typing import Any

import trio

from . import backend_wire as wire
from .address import Address
from .backend import BackendNode, ClusterStatistics, LocalBackend, PeerInfo
from .backend_batch import Command, Op, plan
from .broker_url import parse_broker_url
from .errors import BrokerUnreachable, NameTaken
from .extras import MissingExtra
from .reasons import Crash

try:
    import anyio
    import coredis
    import coredis.exceptions
    import coredis.retry
    from coredis.connection import TCPLocation
except ModuleNotFoundError as missing:
    raise MissingExtra("redis", "the Redis backend (--redis)") from missing

Client = coredis.Redis[bytes] | coredis.RedisCluster[bytes]
"""One Redis, or a Redis Cluster (``redis+cluster://`` seeds)."""


logger = logging.getLogger("corral.cluster")

BROKER_ERRORS = (
    coredis.exceptions.RedisError,
    OSError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
)
"""What losing the broker looks like (connection refused or reset, timeouts, closed streams)."""


FLUSH_OPS = 1000
"""Most queued ops one flush sends: a backlog (20,000 joins at start-up) goes out in bounded
pipelines, each a short step of the loop, with heartbeats in between."""


def default_node_id() -> str:
    """``host:pid:random``: unique for every process, readable in logs."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class RedisBackend:
    """Names, groups and remote delivery over Redis (see the module docstring).

    ``url`` is a ``redis://``, ``rediss://`` (TLS), ``unix://`` or ``redis+cluster://`` (a
    Redis Cluster's seed nodes) URL, checked at once
    (``broker_url``: BadBrokerUrl says what is wrong; credentials may come from the
    environment); nodes with the same Redis and ``prefix`` form one cluster.
    ``node_id`` defaults to ``host:pid:random``. Every ``heartbeat`` seconds the node renews its
    lease (which keeps its names) and says it is alive; a node not heard for ``lease`` seconds
    is down, and its names are free. While Redis is unreachable the node retries with backoff
    up to ``max_backoff`` seconds; past ``max_queued`` unsent messages, new cross-node sends
    are lost (counted). At start-up, ``startup_wait`` None serves at once and keeps trying; a
    number of seconds waits that long for the first connection, then raises BrokerUnreachable.
    Pass it to ``open_node(backend=...)``; the server does with ``ServerOptions.redis_url``.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "corral",
        node_id: str | None = None,
        heartbeat: float = 1.0,
        lease: float = 5.0,
        max_backoff: float = 0.5,
        max_queued: int = 100_000,
        startup_wait: float | None = None,
    ) -> None:
        if not lease > heartbeat > 0:
            raise ValueError(f"need lease > heartbeat > 0, not {lease=} {heartbeat=}")
        if node_id is not None and "\n" in node_id:
            raise ValueError(f"a node id cannot hold a newline: {node_id!r}")
        self.broker = parse_broker_url(url)
        self.url = self.broker.redacted
        self.startup_wait = startup_wait
        self._wait_logged = False
        self.keys = wire.Keys(prefix, sharded=self.broker.cluster)
        self.node_id: str | None = node_id or default_node_id()
        self.heartbeat = heartbeat
        self.lease = lease
        self.max_backoff = max_backoff
        self.max_queued = max_queued
        self.view = LocalBackend()
        self._me = self.node_id
        self._node: BackendNode | None = None
        self._outbox: deque[Op] = deque()
        self._wakeup = trio.Event()
        self._in_flight: list[Op] = []
        self._owned_names: dict[str, Address] = {}
        self._pending: dict[str, trio.Event] = {}  # names claimed, Redis not heard yet
        self._owned_members: dict[tuple[str, Address], None] = {}
        self._peers: dict[str, float] = {}
        self._resync: set[str] = set()  # peers whose memberships to read from Redis
        self._resync_due = trio.Event()
        self._connected = False
        self._connected_event = trio.Event()
        self._flushed: trio.Event | None = None
        self._task_status: trio.TaskStatus[None] | None = None
        self._changed = trio.Event()
        self._said_goodbye = False
        self._stopped = trio.Event()
        self._lost_since: float | None = None
        self._lost_in_outage = 0
        self._last_loss_logged = -math.inf
        self.sent = 0
        self.received = 0
        self.lost = 0
        self.rejected = 0
        self._rejections_logged: dict[str, float] = {}
        self.reconnects = 0
        self.last_resubscribe: float | None = None

    # ---- the registry (local view first, then the broker) ---------------------------------

    def register(self, name: str, address: Address) -> None:
        """Bind ``name`` here at once and claim it cluster-wide (a lost race stops the actor)."""
        self.view.register(name, address)
        if address.node == self._me:
            self._owned_names[name] = address
            self._pending.setdefault(name, trio.Event())
            self._queue(("claim", name, address))

    def unregister(self, name: str) -> None:
        """Release a name held by an actor of this node (another node's names stay)."""
        address = self._owned_names.pop(name, None)
        if address is not None:
            self.view.unregister(name)
            self._queue(("release", name, address))

    def whereis(self, name: str) -> Address | None:
        """The address registered as ``name`` anywhere in the cluster, as this node knows it."""
        return self.view.whereis(name)

    def names_of(self, address: Address) -> list[str]:
        """Every name registered to ``address``."""
        return self.view.names_of(address)

    async def wait_registered(self, name: str) -> Address:
        """Wait until ``name`` is registered on any node and, when this node is claiming
        it, until Redis has answered (the address returned is the one the cluster agreed on)."""
        while True:
            address = await self.view.wait_registered(name)
            pending = self._pending.get(name)
            if pending is None:
                return address
            await pending.wait()

    def join(self, group: str, address: Address) -> None:
        """Add an actor to ``group`` cluster-wide; this node keeps the membership (and renews
        it), even for another node's actor (a chat room adding a connection, say)."""
        self.view.join(group, address)
        if (group, address) not in self._owned_members:
            self._owned_members[(group, address)] = None
            self._queue(("join", group, address))

    def leave(self, group: str, address: Address) -> None:
        """Remove an actor from ``group`` cluster-wide (whichever node keeps the membership)."""
        kept = self._owned_members.pop((group, address), 0) is None
        if kept or address in self.view.members(group):
            self.view.leave(group, address)
            self._queue(("leave", group, address))

    def members(self, group: str) -> list[Address]:
        """Members of ``group`` on every live node (this node's view)."""
        return self.view.members(group)

    def members_on(self, group: str, node: str) -> list[Address]:
        """Members of ``group`` on ``node`` (this node's view)."""
        return self.view.members_on(group, node)

    def member_nodes(self, group: str) -> dict[str, int]:
        """How many members of ``group`` each live node has (this node's view)."""
        return self.view.member_nodes(group)

    def which_groups(self) -> list[str]:
        """Every group with members anywhere."""
        return self.view.which_groups()

    def forget(self, address: Address) -> None:
        """An actor of this node ended: release its names and memberships everywhere."""
        for name in self.view.names_of(address):
            if self._owned_names.pop(name, None) is not None:
                self._queue(("release", name, address))
        for group in self.view.groups_of(address):
            self.leave(group, address)  # also tells the node keeping it, if not this one
        self.view.forget(address)

    # ---- the cluster -----------------------------------------------------------------------

    def attach(self, node: BackendNode) -> None:
        """Deliver what arrives for ``node``."""
        self._node = node
        self.view.attach(node)

    def route(self, node: str, payload: bytes) -> bool:
        """Queue an envelope for ``node``; while Redis is unreachable it is lost (counted)."""
        if not self._connected or len(self._outbox) >= self.max_queued:
            self._count_lost(1)
            return False
        self._queue(("msg", node, payload))
        return True

    def is_alive(self, node: str) -> bool:
        """This node, or a node heard from within the lease."""
        return node == self._me or node in self._peers

    def cluster(self) -> ClusterStatistics:
        """Live nodes, traffic, losses and the state of the link to Redis."""
        now = trio.current_time()
        peers = [PeerInfo(self._me, True, 0.0)] + [
            PeerInfo(node, True, now - heard) for node, heard in sorted(self._peers.items())
        ]
        return ClusterStatistics(
            node=self._me,
            connected=self._connected,
            peers=tuple(peers),
            sent=self.sent,
            received=self.received,
            lost=self.lost,
            rejected=self.rejected,
            reconnects=self.reconnects,
            last_resubscribe=self.last_resubscribe,
        )

    async def wait_connected(self) -> None:
        """Wait until the node is subscribed and announced (for tests and start-up)."""
        while not self._connected:
            await self._connected_event.wait()

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Wait until ``condition()`` holds, checking it after every change Redis brings
        (an event, a message, a heartbeat, the link going up or down)."""
        while not condition():
            await self._changed.wait()

    def _changes(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # ---- the service: connect, then read, write and heartbeat until the link breaks -------

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Stay connected to Redis, reconnecting with backoff; started after the first try."""
        first = min(0.05, self.max_backoff)
        backoff = first
        self._task_status = task_status
        deadline = trio.current_time() + (self.startup_wait or 0.0)
        while True:
            failure: BaseExceptionGroup[BaseException] | None = None
            try:
                await self._session()
                if self._said_goodbye:
                    self._stopped.set()
                    return
            except* BROKER_ERRORS as caught:
                failure = caught
            if failure is not None:
                if self._must_fail_start(deadline):
                    raise BrokerUnreachable(self.url, _first(failure))
                if self._connected:
                    backoff = first
                if self._waiting_to_start():
                    self._log_waiting(failure)
                else:
                    self._disconnected(failure)
            if self.startup_wait is None:
                self._started()  # unreachable at start-up: serve anyway, and keep trying
            await trio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)

    def _waiting_to_start(self) -> bool:
        """Not started yet, and told to wait for Redis before starting."""
        return self._task_status is not None and self.startup_wait is not None

    def _must_fail_start(self, deadline: float) -> bool:
        """Waiting to start, and the wait allowed is over."""
        return self._waiting_to_start() and trio.current_time() >= deadline

    def _log_waiting(self, failure: BaseExceptionGroup[BaseException]) -> None:
        if not self._wait_logged:
            self._wait_logged = True
            logger.warning(
                "node %s: waiting up to %g s for Redis at %s (%s)",
                self._me,
                self.startup_wait,
                self.url,
                _first(failure),
            )

    def _started(self) -> None:
        if self._task_status is not None:
            self._task_status.started()
            self._task_status = None

    def _client(self) -> Client:
        """A client for one session: of the one Redis, or of the Redis Cluster's shards."""
        options = self.broker.client_options()
        if self.broker.cluster:
            return coredis.RedisCluster(
                startup_nodes=[TCPLocation(host, port) for host, port in self.broker.seeds],
                connect_timeout=2.0,
                retry_policy=coredis.retry.NoRetryPolicy(),
                **options,
            )
        return coredis.Redis.from_url(
            self.broker.url,
            connect_timeout=2.0,
            retry_policy=coredis.retry.NoRetryPolicy(),
            **options,
        )

    async def _session(self) -> None:
        client = self._client()
        async with client:
            channels = [self.keys.inbox(self._me), self.keys.events]
            subscribe = (
                client.sharded_pubsub if isinstance(client, coredis.RedisCluster) else client.pubsub
            )  # a shard channel lives on its slot's shard only: sharded pub/sub scales out
            async with subscribe(
                channels=channels, retry_policy=None, ignore_subscribe_messages=True
            ) as subscription:
                await self._announce(client)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._write, client)
                    nursery.start_soon(self._beat)
                    nursery.start_soon(self._resync_peers, client)
                    self._started()
                    async for message in subscription:
                        self._arrived(message)
                        if self._said_goodbye:
                            nursery.cancel_scope.cancel()
                            return  # leave the subscription while its connection is up
                    raise coredis.exceptions.ConnectionError("Redis closed the subscription")

    async def _announce(self, client: Client) -> None:
        """Just (re)connected: learn the cluster, re-claim names, re-join groups, say hello."""
        now = trio.current_time()
        async for key in client.scan_iter(match=f"{self.keys.alive('*')}"):
            peer = self.keys.node_of(key, "alive")
            if peer != self._me:
                self._heard(peer, now)
        for peer in list(self._peers):
            self._peers[peer] = now  # nobody could be heard while we were away
        async for key in client.scan_iter(match=self.keys.name("*")):
            value = await client.get(key)
            if value is not None:
                try:
                    address = wire.holder_of(value)
                except wire.Rejected as rejected:
                    self._reject(rejected, key)
                    continue
                self._learn_name(key.decode()[len(self.keys.name("")) :], address)
        async for key in client.scan_iter(match=self.keys.members("*")):
            if self.keys.node_of(key, "members") == self._me:
                continue
            for member in await client.smembers(key):
                try:
                    group, address = wire.unpack_member(member)
                except wire.Rejected as rejected:
                    self._reject(rejected, key)
                    continue
                if self.is_alive(address.node) or address.node == self._me:
                    self.view.join(group, address)
        ops: list[Op] = [("event", (wire.HELLO, self._me)), ("heartbeat",)]
        ops += [("claim", name, address) for name, address in self._owned_names.items()]
        ops += [("join", group, address) for group, address in self._owned_members]
        self._outbox.extendleft(reversed(ops))
        self._wakeup.set()
        self._connected = True
        self._connected_event.set()
        self._changes()
        if self._lost_since is not None:
            self.reconnects += 1
            self.last_resubscribe = trio.current_time() - self._lost_since
            logger.warning(
                "node %s: Redis is back after %.3f s (resubscribed); %d cross-node "
                "messages were lost meanwhile",
                self._me,
                self.last_resubscribe,
                self._lost_in_outage,
            )
            self._lost_since = None
        else:
            logger.info(
                "node %s joined the cluster at %s (%d peers)", self._me, self.url, len(self._peers)
            )

    def _disconnected(self, failure: BaseExceptionGroup[BaseException]) -> None:
        if self._lost_since is None:
            self._lost_since = trio.current_time()
            self._lost_in_outage = 0
            logger.error(
                "node %s: Redis at %s unreachable (%s); local delivery carries on, reconnecting",
                self._me,
                self.url,
                _first(failure),
            )
        self._connected = False
        self._connected_event = trio.Event()
        unsent = [op for op in (*self._in_flight, *self._outbox) if op[0] == "msg"]
        self._count_lost(len(unsent))
        self._in_flight = []
        self._outbox.clear()  # names and memberships are re-announced from what we own
        self._changes()

    async def leave_cluster(self) -> None:
        """Release this node's names and memberships and say goodbye (within a second)."""
        if not self._connected:
            return
        flushed = self._flushed = trio.Event()
        for name, address in self._owned_names.items():
            self._queue(("release", name, address))
        self._queue(("goodbye",))
        with trio.move_on_after(1.0):
            await flushed.wait()
            await self._stopped.wait()  # our own goodbye, heard back, ends the subscription

    # ---- reading -------------------------------------------------------------------------

    def _arrived(self, message: Any) -> None:
        data, channel = message["data"], message["channel"]
        if not isinstance(data, bytes):
            return
        events = channel == self.keys.events.encode()
        for envelope in wire.decode(data, wire.EVENTS if events else wire.ENVELOPES):
            if isinstance(envelope, wire.Rejected):
                self._reject(envelope, channel)
            elif events:
                self._event(envelope)
            elif self._node is not None:
                try:
                    self._node.receive_remote(envelope)
                except wire.Rejected as rejected:
                    self._reject(rejected, channel)
                    continue
                self.received += 1
        self._changes()

    def _reject(self, rejected: wire.Rejected, where: bytes) -> None:
        """Drop what came from Redis that is not allowed data: count it, and log each cause
        at most once a minute (whoever writes it may write it fast)."""
        self.rejected += 1
        now = trio.current_time()
        if now - self._rejections_logged.get(rejected.cause, -math.inf) >= 60.0:
            self._rejections_logged[rejected.cause] = now
            logger.warning(
                "node %s: dropped data from Redis at %s that the cluster wire does not allow "
                "(%s); %d dropped so far. Another writer on this Redis? Give it a password "
                "(see the README's Security section)",
                self._me,
                where.decode(errors="replace"),
                rejected,
                self.rejected,
            )

    def _event(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind in (wire.HELLO, wire.HEARTBEAT):
            if event[1] != self._me:
                self._heard(event[1], trio.current_time())
        elif kind == wire.BYE:
            if event[1] != self._me:
                self._node_down(event[1], "left the cluster")
            else:
                self._said_goodbye = True
        elif kind == wire.NAME_CLAIMED:
            self._learn_name(event[1], event[2])
        elif kind == wire.NAME_RELEASED:
            name, address = event[1], event[2]
            if address.node != self._me and self.view.whereis(name) == address:
                self.view.unregister(name)
            elif self._owned_names.get(name) == address:  # swept: we were thought down
                self._queue(("claim", name, address))
        elif kind == wire.JOINED:
            _, group, address, keeper = event
            if keeper != self._me:
                self._heard(keeper, trio.current_time())  # any event says its node is alive
                if self.is_alive(address.node):
                    self.view.join(group, address)
        elif kind == wire.LEFT:
            _, group, address, keeper = event
            if keeper != self._me:
                self._heard(keeper, trio.current_time())
                self.view.leave(group, address)
                if self._owned_members.pop((group, address), 0) is None:
                    self._queue(("leave", group, address))  # we kept it: drop our record

    def _learn_name(self, name: str, address: Address) -> None:
        if address.node == self._me or not self.is_alive(address.node):
            return
        holder = self.view.whereis(name)
        if holder != address:
            if holder is not None:
                self.view.unregister(name)  # ours lost the race: the claim's answer says so
            self.view.register(name, address)

    def _heard(self, peer: str, now: float) -> None:
        if peer not in self._peers:
            logger.info("node %s: node %s is up", self._me, peer)
            self._resync.add(peer)  # new, or back after being thought down: read its groups
            self._resync_due.set()
        self._peers[peer] = now

    def _node_down(self, peer: str, why: str) -> None:
        if self._peers.pop(peer, None) is None:
            return
        logger.warning("node %s: node %s is down (%s)", self._me, peer, why)
        for address in self.view.addresses_on(peer):
            for name in self.view.names_of(address):  # its names hold no lease: sweep them
                self._queue(("release", name, address))
            self.view.forget(address)
        for group, address in [key for key in self._owned_members if key[1].node == peer]:
            self.leave(group, address)
        if self._node is not None:
            self._node.node_down(peer)

    # ---- writing -------------------------------------------------------------------------

    def _queue(self, op: Op) -> None:
        self._outbox.append(op)
        self._wakeup.set()

    def _queue_first(self, op: Op) -> None:
        """Queue ``op`` ahead of everything waiting (a heartbeat must not wait behind a
        backlog of joins: the other nodes would think this one down)."""
        self._outbox.appendleft(op)
        self._wakeup.set()

    def _count_lost(self, count: int, why: str | None = None) -> None:
        """Count lost messages: while Redis is unreachable (``why`` None: logged once per
        outage, summed when it is back), or for ``why`` (logged at most once a second)."""
        if not count:
            return
        self.lost += count
        if why is None:
            if self._lost_in_outage == 0:
                logger.warning(
                    "node %s: cross-node messages are being lost (Redis unreachable)", self._me
                )
            self._lost_in_outage += count
            return
        now = trio.current_time()
        if now - self._last_loss_logged >= 1.0:
            self._last_loss_logged = now
            logger.warning("node %s: %d cross-node messages lost (%s)", self._me, count, why)

    async def _write(self, client: Client) -> None:
        scripts: dict[str, Any] = {
            name: client.register_script(script)
            for name, script in wire.scripts(self.broker.cluster).items()
        }
        while True:
            if not self._outbox:
                self._wakeup = trio.Event()
                await self._wakeup.wait()
            outbox = self._outbox
            self._in_flight = [outbox.popleft() for _ in range(min(len(outbox), FLUSH_OPS))]
            batch = plan(
                self._in_flight,
                keys=self.keys,
                node=self._me,
                lease_ms=int(self.lease * 1000),
                owned=self._owned_names,
            )
            results = await self._send(client, scripts, batch.commands)
            self._in_flight = []
            self.sent += batch.messages
            unheard = sum(count for index, count in batch.deliveries if results[index] == 0)
            if unheard:  # the node is not subscribed (its own link to Redis is down)
                self.sent -= unheard
                self._count_lost(unheard, "the receiving node is not listening")
            for name in batch.unsent_claims:
                self._answered(name)
            for name, address, index in batch.claims:
                try:
                    self._claimed(name, address, wire.holder_of(results[index]))
                except wire.Rejected as rejected:  # junk under the key: the next beat retries
                    self._reject(rejected, self.keys.name(name).encode())
                self._answered(name)
            if self._owned_members and any(results[i] == 0 for i in batch.lease_renewals):
                self._memberships_lapsed()
            if batch.goodbye and self._flushed is not None:
                self._flushed.set()
            self._changes()

    async def _send(
        self, client: Client, scripts: dict[str, Any], commands: list[Command]
    ) -> tuple[Any, ...]:
        """Issue ``commands`` in one pipeline (one PUBLISH alone needs none); their results.
        On a Redis Cluster a publish is an SPUBLISH, and the pipeline sends each shard its
        own commands."""
        sharded = self.broker.cluster
        if len(commands) == 1 and commands[0].name == "publish":
            publish = client.spublish if sharded else client.publish
            return (await publish(*commands[0].args),)
        async with client.pipeline(transaction=False) as pipe:
            for command in commands:
                _issue(pipe, scripts, command, sharded)
        return pipe.results or ()

    def _answered(self, name: str) -> None:
        pending = self._pending.pop(name, None)
        if pending is not None:
            pending.set()

    def _claimed(self, name: str, address: Address, holder: Address) -> None:
        """Redis answered a claim: a holder other than ``address`` won the name."""
        if holder == address or self._owned_names.get(name) != address:
            return
        del self._owned_names[name]
        self.view.unregister(name)
        if self.is_alive(holder.node):
            self.view.register(name, holder)
        error = NameTaken(name, holder)
        logger.warning("node %s: %s lost a name race: %s", self._me, address, error)
        actor = self._node.actor(address) if self._node is not None else None
        if actor is not None:
            actor.terminate(Crash(error))

    def _memberships_lapsed(self) -> None:
        """Our memberships' set expired in Redis (we were silent past the lease, and the
        others forgot us): announce every one again."""
        logger.warning(
            "node %s: silent past the lease, the others forgot its %d group memberships: "
            "announcing them again",
            self._me,
            len(self._owned_members),
        )
        for group, address in self._owned_members:
            self._queue(("join", group, address))

    async def _resync_peers(self, client: Client) -> None:
        """Read the memberships of each node heard anew: one that was thought down (a stalled
        loop, a slow link) and forgotten is whole again in this node's view."""
        while True:
            while not self._resync:
                self._resync_due = trio.Event()
                await self._resync_due.wait()
            peer = self._resync.pop()
            for member in await client.smembers(self.keys.members(peer)):
                try:
                    group, address = wire.unpack_member(member)
                except wire.Rejected as rejected:
                    self._reject(rejected, self.keys.members(peer).encode())
                    continue
                if self.is_alive(address.node):
                    self.view.join(group, address)
            self._changes()

    async def _beat(self) -> None:
        last = trio.current_time()
        while True:
            await trio.sleep(self.heartbeat)
            now = trio.current_time()
            if now - last > self.lease:  # a stalled loop: the others may have swept our names
                logger.warning(
                    "node %s: no heartbeat for %.1f s: claiming names again", self._me, now - last
                )
                for name, address in self._owned_names.items():
                    self._queue(("claim", name, address))
            last = now
            self._queue_first(("heartbeat",))
            for peer, heard in list(self._peers.items()):
                if now - heard > self.lease:
                    self._node_down(peer, f"no heartbeat for {now - heard:.1f} s")
                    self._changes()


def _issue(pipe: Any, scripts: dict[str, Any], command: Command, sharded: bool) -> None:
    """Queue one planned command on a pipeline (``sharded``: SPUBLISH for PUBLISH)."""
    name, args = command.name, command.args
    if name == "publish":
        (pipe.spublish if sharded else pipe.publish)(*args)
    elif name in scripts:  # claim, release: keys first, then arguments
        scripts[name](keys=args[:2], args=args[2:], client=pipe)
    elif name == "sadd":
        pipe.sadd(args[0], [args[1]])
    elif name == "srem":
        pipe.srem(args[0], [args[1]])
    elif name == "pexpire":
        pipe.pexpire(*args)
    elif name == "set_px":
        pipe.set(args[0], args[1], px=args[2])
    elif name == "delete":
        pipe.delete(list(args))
    else:
        raise AssertionError(f"unknown command {name!r}")


def _first(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
