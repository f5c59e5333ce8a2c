"""What a server counts about its connections: plain integers, read at scrape time.

Nothing here is called per message. Each connection keeps its own integer counters (frames
and bytes in and out); the stats holds the open connections, folds a connection's counters
into its totals when it closes, and counts opens, closes (by route, close code label and
terminate reason), refused upgrades, sampled callback times and blocked-loop steps.
``server.ops.metrics`` turns a stats record and its node into Prometheus metrics when they are
scraped.

There is one stats record per actor node (one server per node): ``stats_of(node)``.
"""

from __future__ import annotations

import bisect
from collections import Counter, deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import attrs

from actors import Actor, ActorInfo, Address

from ..engine.close_codes import close_code_label
from ..engine.per_node import PerNode
from ..termination import ClientClosed, TerminateReason

if TYPE_CHECKING:
    from ..front.http import Request
    from ..front.listener import FrontDoor

RECENT_BLOCKED = 8
"""How many of the latest blocked-loop steps the stats keeps (for the dashboard)."""
SECONDS_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)
"""Upper bounds (seconds) of the callback-time and blocked-step histograms."""


@attrs.define(eq=False)
class Histogram:
    """Counts of observations per bucket (not cumulative), their sum and count."""

    bounds: tuple[float, ...] = SECONDS_BUCKETS
    counts: list[int] = attrs.field(init=False)
    total: float = 0.0
    count: int = 0

    def __attrs_post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound

    def observe(self, value: float) -> None:
        """Count one observation."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """Prometheus buckets: ``(le, observations <= le)``, ending with ``+Inf``."""
        buckets, running = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return buckets


@attrs.frozen
class CloseKey:
    """How one connection ended, as counted: its route, the close code's label
    (``closecodes``: a bounded set), the reason's kind."""

    route: str
    code: str
    reason: str


@attrs.frozen
class BlockedStep:
    """One task step the watchdog caught holding the loop: when (wall clock), how long, its
    task and connection, and where it held the loop."""

    at: float
    seconds: float
    task: str
    handler: str
    route: str
    path: str
    where: str


@attrs.frozen
class Traffic:
    """Totals since the server started, closed connections and open ones together."""

    frames_in: int
    frames_out: int
    bytes_in: int
    bytes_out: int
    outbox_dropped: int


class CoreCounts(Protocol):
    """What the stats read of a connection's core: frames written, pushes dropped."""

    @property
    def frames_out(self) -> int: ...
    @property
    def dropped(self) -> int: ...


class OpenConnection(Protocol):
    """What the stats and the loop view read of an open connection (the engine's
    ``Connection``; a protocol, so that counting needs nothing of the engine's loop)."""

    @property
    def actor(self) -> Actor: ...
    @property
    def handler(self) -> object: ...
    @property
    def request(self) -> Request: ...
    @property
    def core(self) -> CoreCounts: ...
    @property
    def frames_in(self) -> int: ...
    @property
    def bytes_in(self) -> int: ...
    @property
    def bytes_out(self) -> int: ...
    def on_old_code(self) -> bool: ...


@attrs.define(eq=False)
class ServerStats:
    """One server's counters; every method is O(1) and called once per event it counts."""

    open: dict[OpenConnection, str] = attrs.field(factory=dict)
    """Open connections and their route pattern."""
    opened: Counter[str] = attrs.field(factory=Counter)
    closed: Counter[CloseKey] = attrs.field(factory=Counter)
    refused: Counter[int] = attrs.field(factory=Counter)
    """Requests answered with an error instead of an upgrade, by HTTP status."""
    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    """Totals of closed connections (the open ones hold their own)."""
    outbox_dropped: int = 0
    mailbox_dropped: int = 0
    """Closed connections' drops; other actors' are carried by ``ended_actor_drops``."""
    handler_seconds: Histogram = attrs.field(factory=Histogram)
    """Sampled websocket_handle durations (see ``Connection``: one call in 64 per connection)."""
    blocked: Counter[str] = attrs.field(factory=Counter)
    """Task steps that held the loop past the watchdog's threshold, by route ("" if none)."""
    blocked_seconds: Histogram = attrs.field(factory=Histogram)
    recent_blocked: deque[BlockedStep] = attrs.field(factory=lambda: deque(maxlen=RECENT_BLOCKED))
    front_door: FrontDoor | None = None
    upgrades: Counter[str] = attrs.field(factory=Counter)
    """Hot upgrades by result, ``ok`` or ``failed``."""
    last_upgrade: str = ""
    """The last upgrade's report, in one line (see ``server.run.upgrade``)."""
    _drops_seen: dict[Address, int] = attrs.field(factory=dict)
    _ended_drops: int = 0

    def connection_opened(self, connection: OpenConnection, route: str) -> None:
        """A connection was upgraded on ``route`` (its pattern)."""
        self.open[connection] = route
        self.opened[route] += 1

    def connection_closed(
        self, connection: OpenConnection, reason: TerminateReason, code: str
    ) -> None:
        """A connection ended: count how (``code`` as its label), and keep its counters in
        the totals."""
        route = self.open.pop(connection, "")
        label = close_code_label(int(code), chosen_by_client=isinstance(reason, ClientClosed))
        self.closed[CloseKey(route, label, reason.kind)] += 1
        self.frames_in += connection.frames_in
        self.frames_out += connection.core.frames_out
        self.bytes_in += connection.bytes_in
        self.bytes_out += connection.bytes_out
        self.outbox_dropped += connection.core.dropped
        self.mailbox_dropped += connection.actor.mailbox.dropped

    def upgraded(self, ok: bool, line: str) -> None:
        """A hot upgrade ended (``ok``, or it failed and the old code runs on)."""
        self.upgrades["ok" if ok else "failed"] += 1
        self.last_upgrade = line

    def on_old_code(self) -> int:
        """Open connections that have not yet run an event since the last upgrade."""
        return sum(1 for connection in self.open if connection.on_old_code())

    def open_by_route(self) -> dict[str, int]:
        """Connections open now by route pattern, 0 for a WebSocket route with none (every
        route that ever had one, and the front door's), so a series reads 0 at zero."""
        routes = dict.fromkeys(self.opened, 0)
        if self.front_door is not None:
            for route in self.front_door.router.routes:
                if route.kind == "websocket":
                    routes.setdefault(route.pattern, 0)
        for pattern in self.open.values():
            routes[pattern] = routes.get(pattern, 0) + 1
        return routes

    def traffic(self) -> Traffic:
        """Frames, bytes and outbox drops so far (reads every open connection's counters)."""
        live = list(self.open)
        return Traffic(
            frames_in=self.frames_in + sum(c.frames_in for c in live),
            frames_out=self.frames_out + sum(c.core.frames_out for c in live),
            bytes_in=self.bytes_in + sum(c.bytes_in for c in live),
            bytes_out=self.bytes_out + sum(c.bytes_out for c in live),
            outbox_dropped=self.outbox_dropped + sum(c.core.dropped for c in live),
        )

    def mailbox_dropped_total(self, infos: Sequence[ActorInfo]) -> int:
        """Messages dropped or evicted by full mailboxes so far, given the live actors with
        drops (``Census.with_drops``; others may be in ``infos`` too)."""
        others = {i.address: i.dropped for i in infos if i.kind != "connection" and i.dropped}
        live_connections = sum(i.dropped for i in infos if i.kind == "connection")
        return (
            self.mailbox_dropped
            + live_connections
            + sum(others.values())
            + self.ended_actor_drops(others)
        )

    def ended_actor_drops(self, live: dict[Address, int]) -> int:
        """Drops of other actors that have ended, as last seen by a scrape.

        ``live`` maps each live non-connection actor with drops to its count; an actor gone
        since the previous scrape keeps the count that scrape saw (so the total never goes
        down; drops in its last moments before ending may be missed).
        """
        for address, dropped in self._drops_seen.items():
            if address not in live:
                self._ended_drops += dropped
        self._drops_seen = dict(live)
        return self._ended_drops


stats_of = PerNode(ServerStats)
"""The stats of the server running on ``node`` (made on first use)."""
