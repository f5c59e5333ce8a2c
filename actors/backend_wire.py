"""What crosses the broker: envelopes between nodes, cluster events, keys and scripts.

An envelope is a small tuple whose first item says what it is; it is pickled (as Erlang's
``term_to_binary``: the nodes of one cluster trust each other, and so trust Redis). Many
envelopes for one node travel in one Redis message, each prefixed by its length, so a busy
node publishes once per batch, not once per message. Pure data and functions: no I/O here.
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import Iterator
from typing import Any

import attrs

from .address import Address
from .reasons import Crash, ExitReason

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

_LENGTH = struct.Struct(">I")


class NotPortable(TypeError):
    """A message for another node cannot be pickled."""

    def __init__(self, msg: Any, error: Exception) -> None:
        super().__init__(
            f"{type(msg).__name__} cannot travel to another node ({error}); send plain data, "
            "attrs/dataclass instances or other picklable values"
        )


def encode(envelope: tuple[Any, ...]) -> bytes:
    """One envelope as a framed chunk (NotPortable if it does not pickle)."""
    try:
        data = pickle.dumps(envelope, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise NotPortable(envelope[-1], exc) from exc
    return _LENGTH.pack(len(data)) + data


def decode(batch: bytes) -> Iterator[tuple[Any, ...]]:
    """The envelopes of a batch of framed chunks, in order."""
    view = memoryview(batch)
    offset = 0
    while offset < len(view):
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += _LENGTH.size
        yield pickle.loads(view[offset : offset + length])
        offset += length


def portable(reason: ExitReason) -> ExitReason:
    """An exit reason that pickles: a crash whose exception does not becomes its repr."""
    try:
        pickle.dumps(reason)
    except Exception:
        if isinstance(reason, Crash):
            return Crash(RuntimeError(repr(reason.exception)))
        return Crash(RuntimeError(str(reason)))
    return reason


@attrs.frozen
class Keys:
    """Every Redis key and channel of one cluster, under ``prefix``."""

    prefix: str

    @property
    def events(self) -> str:
        """The channel every node listens to for membership, names and groups."""
        return f"{self.prefix}:events"

    def inbox(self, node: str) -> str:
        """The channel a node listens to for its envelopes."""
        return f"{self.prefix}:node:{node}"

    def alive(self, node: str) -> str:
        """Exists while the node heartbeats (a lease)."""
        return f"{self.alive_prefix}{node}"

    @property
    def alive_prefix(self) -> str:
        """What ``alive`` keys start with (the claim script appends a node id)."""
        return f"{self.prefix}:alive:"

    def name(self, name: str) -> str:
        """Holds the address registered as ``name`` (``name_value``): valid while its node's
        ``alive`` key exists, so a node's heartbeat renews all its names at once."""
        return f"{self.prefix}:name:{name}"

    def members(self, node: str) -> str:
        """The set of a node's group memberships (a lease its node renews)."""
        return f"{self.prefix}:members:{node}"

    def node_of(self, key: bytes, kind: str) -> str:
        """The node id at the end of an ``alive``/``members`` key."""
        return key.decode()[len(f"{self.prefix}:{kind}:") :]


CLAIM = """
local holder = redis.call('GET', KEYS[1])
if holder ~= false and holder ~= ARGV[1] then
  local node = string.match(holder, '^([^\\n]*)\\n')
  if node and redis.call('EXISTS', ARGV[2] .. node) == 1 then
    return holder
  end
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PUBLISH', KEYS[2], ARGV[3])
return ARGV[1]
"""
"""Claim a name atomically: it is ours unless another node holds it and is alive (its
``alive`` key, ``ARGV[2]`` plus its id, exists); returns the holder's ``name_value``. The name
keys carry no lease of their own: a dead node's names are taken over (and swept by the nodes
that notice it died), so renewing costs one command per heartbeat, not one per name. (The
alive key is built in the script: fine on one Redis, not on Redis Cluster.)"""

RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', KEYS[2], ARGV[2])
  return 1
end
return 0
"""
"""Release a name only if we still hold it, and tell the cluster."""


def name_value(address: Address) -> bytes:
    """What a name key holds: the holder's node id, a newline, then the packed address (the
    claim script reads the node id to check whether the holder is alive)."""
    return address.node.encode() + b"\n" + pack_address(address)


def holder_of(value: bytes) -> Address:
    """The address in a name key's ``name_value``."""
    address: Address = unpack(value[value.index(b"\n") + 1 :])
    return address


def pack_address(address: Any) -> bytes:
    """An address as the bytes stored under a name key (the same bytes every time)."""
    return pickle.dumps(address, protocol=pickle.HIGHEST_PROTOCOL)


def unpack(data: bytes) -> Any:
    """The value behind bytes made by ``pack_address`` or stored as a membership."""
    return pickle.loads(data)
