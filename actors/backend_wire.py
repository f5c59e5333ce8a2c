"""What crosses the broker: envelopes between nodes, cluster events, keys and scripts.

An envelope is a small tuple whose first item says what it is, encoded as data only
(``wire_codec``: MessagePack with the registered types), never pickled: whoever can write to
the broker can at worst send data, which ``decode`` checks against the envelope's shape before
the node acts on it. Many envelopes for one node travel in one Redis message, each prefixed by
its length, so a busy node publishes once per batch, not once per message. Pure data and
functions: no I/O here.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import attrs

from . import reasons
from . import wire_codec as codec
from .address import Address
from .errors import RemoteError
from .messages import Exit
from .reasons import Crash, ExitReason
from .wire_codec import NotPortable as NotPortable
from .wire_codec import Rejected as Rejected

# Envelopes from one node to another (the first item of the tuple).
SEND = "send"  # (SEND, address, msg): an ordinary message
NOTIFY = "notify"  # (NOTIFY, address, msg): a runtime notification, never dropped
PUBLISH = "publish"  # (PUBLISH, fanout, group, payload): fan out to local members
MONITOR = "monitor"  # (MONITOR, serial, watcher, target)
DEMONITOR = "demonitor"  # (DEMONITOR, serial, watcher, target)
DOWN = "down"  # (DOWN, serial, watcher, target, reason)
EXIT = "exit"  # (EXIT, target, reason)
LINK = "link"  # (LINK, linker, target)
UNLINK = "unlink"  # (UNLINK, linker, target)
LINKED_EXIT = "linked-exit"  # (LINKED_EXIT, ended, target, reason): a linked actor ended

# Events every node hears on the cluster channel.
HELLO = "hello"  # (HELLO, node): a node (re)connected
HEARTBEAT = "hb"  # (HEARTBEAT, node)
BYE = "bye"  # (BYE, node): a node left cleanly
NAME_CLAIMED = "name+"  # (NAME_CLAIMED, name, address)
NAME_RELEASED = "name-"  # (NAME_RELEASED, name, address)
JOINED = "join"  # (JOINED, group, address, keeper): the keeper node holds the record
LEFT = "leave"  # (LEFT, group, address, by): whoever keeps it drops it

Shape = tuple[type | tuple[type, ...], ...]
"""The types of an envelope's items after its kind (``object``: any portable value)."""

ENVELOPES: dict[str, Shape] = {
    SEND: (Address, object),
    NOTIFY: (Address, object),
    PUBLISH: (str, (str, Address), object),
    MONITOR: (int, Address, Address),
    DEMONITOR: (int, Address, Address),
    DOWN: (int, Address, Address, ExitReason),
    EXIT: (Address, ExitReason),
    LINK: (Address, Address),
    UNLINK: (Address, Address),
    LINKED_EXIT: (Address, Address, ExitReason),
}
"""What a node's inbox may carry."""

EVENTS: dict[str, Shape] = {
    HELLO: (str,),
    HEARTBEAT: (str,),
    BYE: (str,),
    NAME_CLAIMED: (str, Address),
    NAME_RELEASED: (str, Address),
    JOINED: (str, Address, str),
    LEFT: (str, Address, str),
}
"""What the cluster's event channel may carry."""

_LENGTH = struct.Struct(">I")


def encode(envelope: tuple[Any, ...]) -> bytes:
    """One envelope as a framed chunk (NotPortable, naming the message, if it cannot travel)."""
    items = list(envelope)
    try:
        data = codec.pack(items)
    except NotPortable as error:
        if error.value is items:
            raise NotPortable(envelope[-1], error.detail) from error
        raise
    return _LENGTH.pack(len(data)) + data


def decode(batch: bytes, shapes: dict[str, Shape]) -> Iterator[tuple[Any, ...] | Rejected]:
    """The envelopes of a batch of framed chunks, in order, each checked against ``shapes``;
    one that is not allowed comes as its ``Rejected`` (a broken frame ends the batch)."""
    view = memoryview(batch)
    offset = 0
    while offset < len(view):
        if offset + _LENGTH.size > len(view):
            yield Rejected("broken framing", "a truncated length")
            return
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += _LENGTH.size
        if offset + length > len(view):
            yield Rejected("broken framing", f"a chunk of {length} bytes overruns the batch")
            return
        try:
            yield checked(codec.unpack(view[offset : offset + length]), shapes)
        except Rejected as rejected:
            yield rejected
        offset += length


def checked(value: Any, shapes: dict[str, Shape]) -> tuple[Any, ...]:
    """``value`` as an envelope of one of ``shapes``; Rejected if it is not one."""
    if type(value) is not list or not value or type(value[0]) is not str:
        raise Rejected("not an envelope")
    shape = shapes.get(value[0])
    if shape is None:
        raise Rejected("unknown envelope kind", repr(value[0][:50]))
    if len(value) != len(shape) + 1:
        raise Rejected("malformed envelope", f"{value[0]} with {len(value) - 1} items")
    for index, expected in enumerate(shape, 1):
        if expected is not object and not isinstance(value[index], expected):
            raise Rejected("malformed envelope", f"{value[0]} with a {type(value[index]).__name__}")
    return tuple(value)


def portable(reason: ExitReason) -> ExitReason:
    """An exit reason that can travel: one of an unregistered class becomes a crash."""
    try:
        codec.pack(reason)
    except NotPortable:
        return Crash(RemoteError(codec.type_name(reason), str(reason)))
    return reason


def pack_address(address: Any) -> bytes:
    """An address (or a ``(group, address)`` membership) as the bytes stored in Redis (the
    same bytes every time)."""
    return codec.pack(address)


def unpack_address(data: bytes) -> Address:
    """The address behind bytes stored under a name key (Rejected if they are not one)."""
    value = codec.unpack(data)
    if type(value) is not Address:
        raise Rejected("not an address")
    return value


def unpack_member(data: bytes) -> tuple[str, Address]:
    """The ``(group, address)`` stored as a membership (Rejected if it is not one)."""
    value = codec.unpack(data)
    if type(value) is not tuple or len(value) != 2:
        raise Rejected("not a membership")
    group, address = value
    if type(group) is not str or type(address) is not Address:
        raise Rejected("not a membership")
    return group, address


def _build_address(values: list[Any]) -> Address:
    if len(values) == 3:  # plain checks: an address is in nearly every envelope
        node, serial, label = values
        if type(node) is str and type(serial) is int and (label is None or type(label) is str):
            return Address(node, serial, label)
    raise Rejected("malformed address")


def _build_crash(values: list[Any]) -> Crash:
    match values:
        case [str(type_name), str(text)]:
            return Crash(RemoteError(type_name, text))
    raise Rejected("malformed crash")


def _crash_fields(crash: Crash) -> list[Any]:
    error = crash.exception
    if isinstance(error, RemoteError):
        return [error.type_name, error.text]
    return [codec.type_name(error), str(error)]


def _build_exit(values: list[Any]) -> Exit:
    match values:
        case [(Address() | None) as address, ExitReason() as reason]:
            return Exit(address, reason)
    raise Rejected("malformed exit")


codec.register(Address, "corral.Address", lambda a: [a.node, a.serial, a.label], _build_address)
codec.register(Crash, "corral.Crash", _crash_fields, _build_crash)
codec.register(Exit, "corral.Exit", lambda e: [e.address, e.reason], _build_exit)
for _reason in (
    reasons.Normal,
    reasons.Shutdown,
    reasons.Killed,
    reasons.MailboxOverflow,
    reasons.NoProc,
    reasons.NoConnection,
):
    codec.wire_type(_reason, tag=f"corral.{_reason.__name__}")


@attrs.frozen
class Keys:
    """Every Redis key and channel of one cluster, under ``prefix``.

    ``sharded`` (a Redis Cluster): the keys and the events channel carry the hash tag
    ``{prefix}``, so that they share one slot (the claim script reads a name and an alive key
    together, and publishes on the events channel), while each node's inbox channel hashes
    on its whole name: the messages, the bulk of the traffic, spread over every shard.
    """

    prefix: str
    sharded: bool = False

    @property
    def _control(self) -> str:
        return f"{{{self.prefix}}}" if self.sharded else self.prefix

    @property
    def events(self) -> str:
        """The channel every node listens to for membership, names and groups."""
        return f"{self._control}:events"

    def inbox(self, node: str) -> str:
        """The channel a node listens to for its envelopes."""
        return f"{self.prefix}:node:{node}"

    def alive(self, node: str) -> str:
        """Exists while the node heartbeats (a lease)."""
        return f"{self.alive_prefix}{node}"

    @property
    def alive_prefix(self) -> str:
        """What ``alive`` keys start with (the claim script appends a node id)."""
        return f"{self._control}:alive:"

    def name(self, name: str) -> str:
        """Holds the address registered as ``name`` (``name_value``): valid while its node's
        ``alive`` key exists, so a node's heartbeat renews all its names at once."""
        return f"{self._control}:name:{name}"

    def members(self, node: str) -> str:
        """The set of a node's group memberships (a lease its node renews)."""
        return f"{self._control}:members:{node}"

    def node_of(self, key: bytes, kind: str) -> str:
        """The node id at the end of an ``alive``/``members`` key."""
        return key.decode()[len(f"{self._control}:{kind}:") :]


_CLAIM = """
local holder = redis.call('GET', KEYS[1])
if holder ~= false and holder ~= ARGV[1] then
  local node = string.match(holder, '^([^\\n]*)\\n')
  if node and redis.call('EXISTS', ARGV[2] .. node) == 1 then
    return holder
  end
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('{publish}', KEYS[2], ARGV[3])
return ARGV[1]
"""
"""Claim a name atomically: it is ours unless another node holds it and is alive (its
``alive`` key, ``ARGV[2]`` plus its id, exists); returns the holder's ``name_value``. The name
keys carry no lease of their own: a dead node's names are taken over (and swept by the nodes
that notice it died), so renewing costs one command per heartbeat, not one per name. (The
alive key is built in the script: on Redis Cluster it shares the name key's slot through the
hash tag, see ``Keys``.)"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('{publish}', KEYS[2], ARGV[2])
  return 1
end
return 0
"""
"""Release a name only if we still hold it, and tell the cluster."""


def scripts(sharded: bool) -> dict[str, str]:
    """The claim and release scripts, publishing with SPUBLISH on a Redis Cluster (a shard
    channel) and PUBLISH on one Redis."""
    publish = "SPUBLISH" if sharded else "PUBLISH"
    return {
        "claim": _CLAIM.replace("{publish}", publish),
        "release": _RELEASE.replace("{publish}", publish),
    }


def name_value(address: Address) -> bytes:
    """What a name key holds: the holder's node id, a newline, then the packed address (the
    claim script reads the node id to check whether the holder is alive)."""
    return address.node.encode() + b"\n" + pack_address(address)


def holder_of(value: bytes) -> Address:
    """The address in a name key's ``name_value`` (Rejected if the value is not one)."""
    _, newline, packed = value.partition(b"\n")
    if not newline:
        raise Rejected("not a name value")
    return unpack_address(packed)
