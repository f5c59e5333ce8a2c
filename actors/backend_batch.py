"""One flush of the Redis backend's outbox, planned: the queued ops as Redis commands, in order.

The backend queues small ops (a message for a node, a claim, a join, a heartbeat...); its writer
takes everything queued and asks ``plan`` what to send. Consecutive messages for one node become
one PUBLISH; each claim's answer is found by its index among the results. No I/O here: the
writer issues the commands (``RedisBackend._issue``), and tests can read a plan as data.
"""

from __future__ import annotations

from typing import Any

import attrs

from . import backend_wire as wire
from .address import Address

Op = tuple[Any, ...]
"""``("msg", node, chunk)``, ``("event", event)``, ``("claim"|"release", name, address)``,
``("join"|"leave", group, address)``, ``("heartbeat",)`` or ``("goodbye",)``."""


@attrs.frozen
class Command:
    """One Redis command: ``publish``, ``claim``/``release`` (the Lua scripts), ``sadd``,
    ``srem``, ``pexpire``, ``set_px`` or ``delete``, with its arguments."""

    name: str
    args: tuple[Any, ...]


@attrs.define
class Plan:
    """What one flush sends, and what to do with the answers."""

    commands: list[Command] = attrs.Factory(list)
    claims: list[tuple[str, Address, int]] = attrs.Factory(list)
    """Each claim sent: the name, the claimant, and the index of Redis' answer."""
    unsent_claims: list[str] = attrs.Factory(list)
    """Claims dropped because the name was released since it was queued."""
    deliveries: list[tuple[int, int]] = attrs.Factory(list)
    """Each PUBLISH of messages: the index of its answer (how many subscribers got it: 0
    means the node is not listening, and its messages are lost) and how many it carried."""
    messages: int = 0
    goodbye: bool = False
    lease_renewals: list[int] = attrs.Factory(list)
    """The index of each heartbeat's PEXPIRE of the node's memberships: 0 means the set had
    expired (the node was silent past its lease) and must be announced again."""


def plan(
    ops: list[Op], *, keys: wire.Keys, node: str, lease_ms: int, owned: dict[str, Address]
) -> Plan:
    """The commands for ``ops`` (``owned``: the names this node holds or is claiming)."""
    result = Plan()
    chunks: list[bytes] = []
    target: str | None = None

    def publish_chunks() -> None:
        if chunks and target is not None:
            result.deliveries.append((len(result.commands), len(chunks)))
            result.commands.append(Command("publish", (keys.inbox(target), b"".join(chunks))))
            result.messages += len(chunks)
            chunks.clear()

    for op in ops:
        if op[0] == "msg":
            if op[1] != target:
                publish_chunks()
                target = op[1]
            chunks.append(op[2])
        else:
            publish_chunks()
            _plan_op(result, op, keys, node, lease_ms, owned)
    publish_chunks()
    return result


def _plan_op(
    result: Plan, op: Op, keys: wire.Keys, node: str, lease_ms: int, owned: dict[str, Address]
) -> None:
    kind, commands = op[0], result.commands
    if kind == "event":
        commands.append(Command("publish", (keys.events, wire.encode(op[1]))))
    elif kind == "claim":
        _, name, address = op
        if owned.get(name) == address:
            _claim(result, keys, name, address)
        else:
            result.unsent_claims.append(name)  # released (or lost) since it was queued
    elif kind == "release":
        _, name, address = op
        event = wire.encode((wire.NAME_RELEASED, name, address))
        commands.append(
            Command("release", (keys.name(name), keys.events, wire.name_value(address), event))
        )
    elif kind in ("join", "leave"):
        _, group, address = op
        member = wire.pack_address((group, address))
        change = (wire.JOINED if kind == "join" else wire.LEFT, group, address, node)
        commands.append(Command("sadd" if kind == "join" else "srem", (keys.members(node), member)))
        commands.append(Command("pexpire", (keys.members(node), lease_ms)))
        commands.append(Command("publish", (keys.events, wire.encode(change))))
    elif kind == "heartbeat":
        commands.append(Command("set_px", (keys.alive(node), b"1", lease_ms)))
        result.lease_renewals.append(len(commands))
        commands.append(Command("pexpire", (keys.members(node), lease_ms)))
        commands.append(Command("publish", (keys.events, wire.encode((wire.HEARTBEAT, node)))))
        # The names need nothing: they hold while the alive key does (wire.CLAIM).
    elif kind == "goodbye":
        commands.append(Command("delete", (keys.members(node), keys.alive(node))))
        commands.append(Command("publish", (keys.events, wire.encode((wire.BYE, node)))))
        result.goodbye = True
    else:
        raise AssertionError(f"unknown op {kind!r}")


def _claim(result: Plan, keys: wire.Keys, name: str, address: Address) -> None:
    event = wire.encode((wire.NAME_CLAIMED, name, address))
    value = wire.name_value(address)
    result.claims.append((name, address, len(result.commands)))
    result.commands.append(
        Command("claim", (keys.name(name), keys.events, value, keys.alive_prefix, event))
    )
