"""What one dashboard update shows, built from the node's state alone (no socket, no clock).

``snapshot`` reads the node (its actors, supervisors and groups), the server's stats and the
history, and returns a JSON-ready dict; the feed handler only sends it. Everything here is
read at call time: nothing is counted per message for the dashboard's sake.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from actors import ActorInfo, Address, ChildInfo, Node
from actors.code import CODE

from ...engine.close_codes import close_code_caption
from ...engine.connection import Connection, connection_of
from ..stats import ServerStats
from .history import History

ACTOR_ROWS = 200
"""Actors listed at most (the deepest mailboxes first); the total is given beside."""
TREE_CHILDREN = 12
"""Children a supervisor lists one by one; the rest are counted by kind."""
GROUP_ROWS = 100
"""Groups listed at most (the largest first)."""


def snapshot(
    node: Node, stats: ServerStats, history: History, *, since: int, now: float, feed_route: str
) -> dict[str, Any]:
    """One update: the state now, plus the chart points after sample ``since``.

    ``now`` is wall-clock seconds (ages are measured from it); ``feed_route`` is the
    dashboard's own route, whose connections do not make the server busy.
    """
    census = node.census(deepest=ACTOR_ROWS)
    points = history.points(since)
    by_route = stats.open_by_route()
    served = sum(count for route, count in by_route.items() if route != feed_route)
    return {
        "node": node.name,
        "at": round(now, 3),
        "seq": history.last_seq,
        "idle": served == 0,
        "connections": [
            {"route": route, "open": count} for route, count in sorted(by_route.items())
        ],
        "tree": supervision_tree(node),
        "actors": {"total": census.total, "rows": actor_rows(node, census.deepest, stats, now)},
        "groups": group_rows(node),
        "blocked": blocked_steps(stats),
        "totals": {
            "restarts": node.restarts,
            "dead_letters": node.dead_letters,
            "timers": len(node.timers),
        },
        "cluster": cluster_summary(node),
        "code": {
            "generation": CODE.generation,
            "last_upgrade": stats.last_upgrade,
            "upgrades_failed": stats.upgrades["failed"],
            "on_old_code": stats.on_old_code(),
            "code_change_failures": CODE.code_change_failures,
        },
        "points": points,
        "close_captions": {
            label: close_code_caption(label) for point in points for label in point["closes"]
        },
    }


def cluster_summary(node: Node) -> dict[str, Any] | None:
    """The link to the other nodes (None for a node alone): whether it is up, the nodes
    seen, and the cross-node messages sent, received and lost (Redis unreachable)."""
    if node.backend.node_id is None:
        return None
    cluster = node.cluster()
    return {
        "connected": cluster.connected,
        "nodes": len(cluster.peers),
        "sent": cluster.sent,
        "received": cluster.received,
        "lost": cluster.lost,
    }


def supervision_tree(node: Node) -> list[dict[str, Any]]:
    """The running supervisors as trees: each root (a supervisor nobody supervises) with its
    children, nested supervisors expanded, long child lists counted by kind."""
    children = {address: sup.children_info() for address, sup in node.supervisors.items()}
    supervised = {c.address for listed in children.values() for c in listed}
    return [
        _tree_node(address, address.label or "supervisor", "supervisor", 0, children, node)
        for address in children
        if address not in supervised
    ]


def _tree_node(
    address: Address | None,
    child_id: str,
    kind: str,
    restarts: int,
    children: dict[Address, list[ChildInfo]],
    node: Node,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": child_id,
        "kind": kind,
        "address": _address(address) if address is not None else None,
        "name": (node.names_of(address) or (None,))[0] if address is not None else None,
        "restarts": restarts,
    }
    listed = children.get(address) if address is not None else None
    if listed is not None:
        entry["supervisor"] = True
        entry["children"] = [
            _tree_node(c.address, c.id, c.kind, c.restarts, children, node)
            for c in listed[:TREE_CHILDREN]
        ]
        rest = listed[TREE_CHILDREN:]
        if rest:
            entry["more"] = {
                "count": len(rest),
                "kinds": dict(Counter(c.kind for c in rest)),
                "restarts": sum(c.restarts for c in rest),
            }
    return entry


def actor_rows(
    node: Node, deepest: list[ActorInfo], stats: ServerStats, now: float
) -> list[dict[str, Any]]:
    """One row per actor of ``deepest`` (``Census.deepest``: the deepest mailboxes first).

    ``in``: messages taken into the mailbox, plus frames from the client for a connection;
    ``out``: frames sent to the client (connections only: other actors' sends are not counted).
    """
    rows = []
    for info in deepest:
        actor = node.actor(info.address)
        connection = connection_of(actor) if actor is not None else None
        route = stats.open.get(connection) if connection is not None else None
        rows.append(
            {
                "address": _address(info.address),
                "name": _row_name(info, connection, route),
                "kind": "connection" if info.kind == "connection" else "actor",
                "role": info.kind,
                "route": route,
                "age": round(max(now - info.started_at, 0.0), 1),
                "depth": info.mailbox_length,
                "capacity": info.capacity,
                "in": info.received + (connection.frames_in if connection is not None else 0),
                "out": connection.core.frames_out if connection is not None else None,
                "dropped": info.dropped,
            }
        )
    return rows


def _row_name(info: ActorInfo, connection: Connection | None, route: str | None) -> str:
    """An actor's first name, else its label; a connection's route and peer
    (``/chat/:room 127.0.0.1:50312``), since every connection has the same label."""
    if info.names:
        return info.names[0]
    if connection is not None:
        peer = connection.request.peer
        where = f"{peer[0]}:{peer[1]}" if peer is not None else "?"
        return f"{route or connection.request.path} {where}"
    return info.address.label or ""


def group_rows(node: Node) -> list[dict[str, Any]]:
    """Groups with their member counts, the largest first."""
    counts = [(group, len(node.members(group))) for group in node.which_groups()]
    counts.sort(key=lambda item: (-item[1], item[0]))
    return [{"group": group, "members": count} for group, count in counts[:GROUP_ROWS]]


def blocked_steps(stats: ServerStats) -> dict[str, Any]:
    """The watchdog's findings: how many steps held the loop (by route), and the last few."""
    return {
        "count": sum(stats.blocked.values()),
        "by_route": {route or "-": count for route, count in sorted(stats.blocked.items())},
        "recent": [
            {
                "at": round(step.at, 3),
                "ms": round(step.seconds * 1000, 1),
                "task": step.task,
                "handler": step.handler,
                "route": step.route or "-",
                "path": step.path,
                "where": step.where,
            }
            for step in reversed(stats.recent_blocked)
        ],
    }


def _address(address: Address) -> str:
    return f"{address.node}.{address.serial}"
