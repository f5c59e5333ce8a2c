"""Prometheus metrics, built when scraped: ``corral serve --metrics`` or ``metrics_route``
(``metrics_endpoint``).

This module needs prometheus_client (``pip install 'corral[metrics]'``);
``server.ops.metrics_endpoint`` imports it only when a metrics route is made, so an app without
one never loads it.

Nothing is pushed to prometheus_client while the server runs: the counters are plain
integers on the connections, the node and the server's ``ServerStats``, and ``NodeCollector``
reads them all when ``/metrics`` is fetched. Mailbox depths are a gauge histogram over the
live actors at that moment, plus the deepest few by name.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import attrs

from actors import Node
from actors.code import CODE
from actors.extras import MissingExtra

from .stats import Histogram, ServerStats, stats_of

try:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeHistogramMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.registry import Collector
except ModuleNotFoundError as missing:
    raise MissingExtra("metrics", "Prometheus metrics (--metrics)") from missing

DEPTH_BUCKETS = (0, 1, 4, 16, 64, 256, 1024)
"""Upper bounds of the mailbox-depth histogram (messages waiting)."""
TOP_DEPTHS = 5
"""How many of the deepest mailboxes are named in ``corral_mailbox_depth_top``."""
CLUSTER_COUNTERS = {
    "sent": ("corral_cluster_messages_sent", "Cross-node messages sent through the broker"),
    "received": ("corral_cluster_messages_received", "Cross-node messages received"),
    "lost": (
        "corral_cluster_messages_lost",
        "Cross-node messages lost because the broker was unreachable",
    ),
    "reconnects": ("corral_cluster_reconnects", "Times the link to the broker came back"),
}
"""``actors.cluster()`` counters by field. Any other int field (a counter the actors backend
gains later) is exported too, as ``corral_cluster_<field>``: add it here to name it well."""
_CLUSTER_OTHER_FIELDS = frozenset({"node", "connected", "peers", "last_resubscribe"})


class NodeCollector(Collector):
    """Every corral metric of one server (its node and stats), read at collection time."""

    def __init__(self, node: Node, stats: ServerStats | None = None) -> None:
        self.node = node
        self.stats = stats if stats is not None else stats_of(node)

    def collect(self) -> Iterator[Metric]:
        """The metric families, as prometheus_client's registry asks for them."""
        yield from self._connections()
        yield from self._traffic()
        yield from self._actors()
        yield from self._loop()
        yield from self._upgrades()
        yield from self._cluster()

    def _connections(self) -> Iterator[Metric]:
        stats = self.stats
        open_ = GaugeMetricFamily(
            "corral_connections_open", "Upgraded WebSocket connections open now", labels=["route"]
        )
        for route, count in sorted(stats.open_by_route().items()):
            open_.add_metric([route], count)
        yield open_
        opened = CounterMetricFamily(
            "corral_connections_opened", "WebSocket connections upgraded", labels=["route"]
        )
        for route, count in sorted(stats.opened.items()):
            opened.add_metric([route], count)
        yield opened
        closed = CounterMetricFamily(
            "corral_connections_closed",
            "WebSocket connections closed, by the close code the client got and the terminate "
            "reason",
            labels=["route", "code", "reason"],
        )
        crashes = CounterMetricFamily(
            "corral_handler_crashes",
            "Connections ended by a handler callback raising",
            labels=["route"],
        )
        crashed: Counter[str] = Counter()
        for key, count in sorted(stats.closed.items(), key=lambda item: repr(item[0])):
            closed.add_metric([key.route, key.code, key.reason], count)
            if key.reason == "handler_crashed":
                crashed[key.route] += count
        for route, count in sorted(crashed.items()):
            crashes.add_metric([route], count)
        yield closed
        yield crashes
        refused = CounterMetricFamily(
            "corral_upgrades_refused",
            "Requests for a WebSocket (an upgrade, or a WebSocket route's path) answered with "
            "an error instead (404, 426, 403, 503, or init's own response), by HTTP status",
            labels=["status"],
        )
        statuses = Counter(stats.refused)
        if stats.front_door is not None:
            statuses.update(stats.front_door.upgrades_refused)
        for status, count in sorted(statuses.items()):
            refused.add_metric([str(status)], count)
        yield refused
        if stats.front_door is not None:
            yield GaugeMetricFamily(
                "corral_tcp_connections_active",
                "TCP connections being served (before and after an upgrade)",
                value=stats.front_door.statistics().active_connections,
            )
            asgi = stats.front_door.asgi
            if asgi is not None:
                answered = CounterMetricFamily(
                    "corral_asgi_responses",
                    "HTTP requests the mounted ASGI app answered, by status (500: it failed)",
                    labels=["status"],
                )
                for status, count in sorted(asgi.responses.items()):
                    answered.add_metric([str(status)], count)
                yield answered

    def _traffic(self) -> Iterator[Metric]:
        traffic = self.stats.traffic()
        for name, what, total in (
            ("frames_received", "WebSocket messages from clients", traffic.frames_in),
            ("frames_sent", "WebSocket messages to clients", traffic.frames_out),
            ("bytes_received", "Bytes read from clients' sockets", traffic.bytes_in),
            ("bytes_sent", "Bytes written to clients' sockets", traffic.bytes_out),
        ):
            yield CounterMetricFamily(f"corral_{name}", what, value=total)
        yield CounterMetricFamily(
            "corral_outbox_dropped",
            "Frames pushed to a connection (broadcast) and dropped because its outbox was full",
            value=traffic.outbox_dropped,
        )
        yield _histogram(
            "corral_handler_seconds",
            "websocket_handle duration, sampled: one call in 64 per connection (the 1st, 65th...)",
            self.stats.handler_seconds,
        )

    def _actors(self) -> Iterator[Metric]:
        node, stats = self.node, self.stats
        census = node.census(deepest=TOP_DEPTHS)
        kinds = GaugeMetricFamily("corral_actors", "Live actors, by kind", labels=["kind"])
        for kind, count in sorted(census.kinds.items()):
            kinds.add_metric([kind], count)
        yield kinds
        depths = census.depths
        counts = [sum(1 for d in depths if d <= bound) for bound in DEPTH_BUCKETS]
        yield GaugeHistogramMetricFamily(
            "corral_mailbox_depth",
            "Live actors by messages waiting in their mailbox, now",
            buckets=[
                *((str(b), c) for b, c in zip(DEPTH_BUCKETS, counts, strict=True)),
                ("+Inf", len(depths)),
            ],
            gsum_value=sum(depths),
        )
        top = GaugeMetricFamily(
            "corral_mailbox_depth_top",
            f"The {TOP_DEPTHS} deepest non-empty mailboxes now, by actor",
            labels=["actor", "name", "kind"],
        )
        for info in (info for info in census.deepest if info.mailbox_length):
            address = info.address
            name = info.names[0] if info.names else address.label or ""
            top.add_metric(
                [f"{address.node}.{address.serial}", name, info.kind], info.mailbox_length
            )
        yield top
        yield CounterMetricFamily(
            "corral_mailbox_dropped",
            "Messages dropped or evicted by a full mailbox's overflow policy",
            value=stats.mailbox_dropped_total(census.with_drops),
        )
        yield CounterMetricFamily(
            "corral_supervisor_restarts",
            "Children restarted by supervisors",
            value=node.restarts,
        )
        yield GaugeMetricFamily(
            "corral_timers_pending", "Timers scheduled and not yet fired", value=len(node.timers)
        )
        yield CounterMetricFamily(
            "corral_dead_letters",
            "Messages sent to actors that had ended",
            value=node.dead_letters,
        )

    def _loop(self) -> Iterator[Metric]:
        blocked = CounterMetricFamily(
            "corral_loop_blocked",
            "Task steps that held the trio loop past the watchdog's threshold, by route "
            '("" outside a connection)',
            labels=["route"],
        )
        for route, count in sorted(self.stats.blocked.items()):
            blocked.add_metric([route], count)
        yield blocked
        yield _histogram(
            "corral_loop_blocked_seconds",
            "How long each such task step held the loop",
            self.stats.blocked_seconds,
        )

    def _upgrades(self) -> Iterator[Metric]:
        """Hot code upgrades (``corral upgrade``, SIGHUP) and the moves to new code."""
        upgrades = CounterMetricFamily(
            "corral_upgrades", "Hot code upgrades, by result (ok, failed)", labels=["result"]
        )
        for result in ("ok", "failed"):
            upgrades.add_metric([result], self.stats.upgrades[result])
        yield upgrades
        yield GaugeMetricFamily(
            "corral_code_generation", "Hot code upgrades loaded so far", value=CODE.generation
        )
        yield CounterMetricFamily(
            "corral_code_changes",
            "Connections and GenServers moved to new code through code_change",
            value=CODE.code_changes,
        )
        yield CounterMetricFamily(
            "corral_code_change_failures",
            "Connections and GenServers whose code_change raised: they stay on their old code",
            value=CODE.code_change_failures,
        )
        yield GaugeMetricFamily(
            "corral_connections_on_old_code",
            "Open connections that have had no event since the last upgrade",
            value=self.stats.on_old_code(),
        )

    def _cluster(self) -> Iterator[Metric]:
        """The link to the other nodes, for a node in a cluster (none for a node alone)."""
        if self.node.backend.node_id is None:
            return
        cluster = self.node.cluster()
        yield GaugeMetricFamily(
            "corral_cluster_connected",
            "1 while the link to the broker is up, else 0",
            value=int(cluster.connected),
        )
        yield GaugeMetricFamily(
            "corral_cluster_nodes",
            "Nodes of the cluster this node sees, itself included",
            value=len(cluster.peers),
        )
        for field in attrs.fields(type(cluster)):
            value = getattr(cluster, field.name)
            if field.name in _CLUSTER_OTHER_FIELDS or not isinstance(value, int):
                continue
            name, documentation = CLUSTER_COUNTERS.get(
                field.name, (f"corral_cluster_{field.name}", f"actors.cluster().{field.name}")
            )
            yield CounterMetricFamily(name, documentation, value=value)


def _histogram(name: str, documentation: str, histogram: Histogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(
        name, documentation, buckets=histogram.cumulative(), sum_value=histogram.total
    )


def exposition(node: Node) -> bytes:
    """The Prometheus text exposition of the server running on ``node``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(node))
    return generate_latest(registry)
