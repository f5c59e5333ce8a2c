"""Names, groups and other nodes behind one small interface; in-process is the default.

A distributed backend (``RedisBackend`` in ``backend_redis``) implements the same protocol,
keeping a local view for the synchronous reads so that ``send`` never waits on the network.
The node hands it what leaves the process (``route``) and it hands the node what arrives
(``Node.receive_remote``).
"""

from __future__ import annotations

from typing import Any, Protocol

import attrs
import trio

from .address import Address
from .errors import NameTaken
from .reasons import ExitReason


class Terminable(Protocol):
    """An actor as a backend sees it: something it can end."""

    def terminate(self, reason: ExitReason) -> None: ...


class BackendNode(Protocol):
    """What a backend asks of the node it serves (``actors.Node``): a protocol, so that the
    backends need nothing of the node's module."""

    @property
    def name(self) -> str: ...
    def actor(self, address: Address) -> Terminable | None: ...
    def receive_remote(self, envelope: tuple[Any, ...]) -> None: ...
    def node_down(self, node: str) -> None: ...


@attrs.frozen
class PeerInfo:
    """One node of the cluster as this node sees it."""

    node: str
    alive: bool
    last_seen: float
    """Seconds since this node last heard from it (0 for itself)."""


@attrs.frozen
class ClusterStatistics:
    """What crossed the broker, what was lost, and how the link to it is doing."""

    node: str
    connected: bool
    peers: tuple[PeerInfo, ...]
    sent: int
    received: int
    lost: int
    """Cross-node messages dropped because the broker was unreachable (never silently)."""
    reconnects: int
    last_resubscribe: float | None
    """Seconds from losing the broker to being subscribed again, for the last outage."""
    rejected: int = 0
    """What arrived from the broker and was dropped for not being allowed data (a forged or
    garbled envelope, an unknown type tag, a node running other code): see the log's cause."""


class Backend(Protocol):
    """Registry (unique names), process groups (pubsub membership) and the other nodes."""

    node_id: str | None
    """The node's id in the cluster (None: a one-process backend, the node keeps its name)."""

    def attach(self, node: BackendNode) -> None:
        """Called once by the node that owns this backend."""
        ...

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the backend's own tasks until cancelled (started once it can be used)."""
        ...

    async def leave_cluster(self) -> None:
        """Say goodbye before the node stops: flush, release names and memberships."""
        ...

    def route(self, node: str, payload: bytes) -> bool:
        """Queue an encoded envelope for another node, never waiting; False if it is lost."""
        ...

    def is_alive(self, node: str) -> bool:
        """Whether ``node`` is this node or a live member of the cluster."""
        ...

    def cluster(self) -> ClusterStatistics:
        """Membership, liveness and traffic figures."""
        ...

    def register(self, name: str, address: Address) -> None: ...
    def unregister(self, name: str) -> None: ...
    def whereis(self, name: str) -> Address | None: ...
    def names_of(self, address: Address) -> list[str]: ...
    async def wait_registered(self, name: str) -> Address: ...
    def join(self, group: str, address: Address) -> None: ...
    def leave(self, group: str, address: Address) -> None: ...
    def members(self, group: str) -> list[Address]: ...
    def members_on(self, group: str, node: str) -> list[Address]:
        """Members of ``group`` that live on ``node``, without looking at the others."""
        ...

    def member_nodes(self, group: str) -> dict[str, int]:
        """How many members of ``group`` each node has (nodes with none left out)."""
        ...

    def which_groups(self) -> list[str]: ...
    def forget(self, address: Address) -> None:
        """Drop every name and membership of an actor that has ended."""
        ...


class LocalBackend:
    """The embedded default: plain dicts, consistent at once, for one process."""

    node_id: str | None = None

    def __init__(self) -> None:
        self._node_name = "local"
        self._names: dict[str, Address] = {}
        self._names_of: dict[Address, set[str]] = {}
        self._groups: dict[str, dict[Address, None]] = {}
        self._on_node: dict[str, dict[str, dict[Address, None]]] = {}  # group -> node -> members
        self._groups_of: dict[Address, set[str]] = {}
        self._name_waiters: dict[str, trio.Event] = {}

    def register(self, name: str, address: Address) -> None:
        """Bind ``name`` to ``address``; NameTaken if another actor holds it."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"an actor name must be a non-empty str, not {name!r}")
        holder = self._names.get(name)
        if holder is not None and holder != address:
            raise NameTaken(name, holder)
        self._names[name] = address
        self._names_of.setdefault(address, set()).add(name)
        waiter = self._name_waiters.pop(name, None)
        if waiter is not None:
            waiter.set()

    def unregister(self, name: str) -> None:
        """Remove ``name`` (no error if it is not registered)."""
        address = self._names.pop(name, None)
        if address is not None:
            _discard(self._names_of, address, name)

    def whereis(self, name: str) -> Address | None:
        """The address registered as ``name``, or None."""
        return self._names.get(name)

    def names_of(self, address: Address) -> list[str]:
        """Every name registered to ``address``."""
        return sorted(self._names_of.get(address, ()))

    async def wait_registered(self, name: str) -> Address:
        """Wait until ``name`` is registered and return its address."""
        while (address := self._names.get(name)) is None:
            waiter = self._name_waiters.setdefault(name, trio.Event())
            await waiter.wait()
        return address

    def join(self, group: str, address: Address) -> None:
        """Add ``address`` to ``group`` (joining twice is one membership)."""
        self._groups.setdefault(group, {})[address] = None
        self._on_node.setdefault(group, {}).setdefault(address.node, {})[address] = None
        self._groups_of.setdefault(address, set()).add(group)

    def leave(self, group: str, address: Address) -> None:
        """Remove ``address`` from ``group`` (no error if it was not a member)."""
        members = self._groups.get(group)
        if members is not None:
            members.pop(address, None)
            if not members:
                del self._groups[group]
            nodes = self._on_node[group]
            on_node = nodes.get(address.node)
            if on_node is not None:
                on_node.pop(address, None)
                if not on_node:
                    del nodes[address.node]
            if not nodes:
                del self._on_node[group]
        _discard(self._groups_of, address, group)

    def members(self, group: str) -> list[Address]:
        """Members of ``group`` in join order."""
        return list(self._groups.get(group, ()))

    def members_on(self, group: str, node: str) -> list[Address]:
        """Members of ``group`` on ``node``, in join order (an index: the others cost nothing,
        so a broadcast to a group spread over many nodes costs each node its own members)."""
        return list(self._on_node.get(group, {}).get(node, ()))

    def member_nodes(self, group: str) -> dict[str, int]:
        """How many members of ``group`` each node has."""
        return {node: len(members) for node, members in self._on_node.get(group, {}).items()}

    def which_groups(self) -> list[str]:
        """Every group with at least one member."""
        return list(self._groups)

    def groups_of(self, address: Address) -> list[str]:
        """Every group ``address`` is a member of."""
        return sorted(self._groups_of.get(address, ()))

    def forget(self, address: Address) -> None:
        """Drop every name and membership of an ended actor."""
        for name in self._names_of.pop(address, ()):
            self._names.pop(name, None)
        for group in list(self._groups_of.get(address, ())):
            self.leave(group, address)

    # ---- the cluster: just this node ------------------------------------------------------

    def attach(self, node: BackendNode) -> None:
        """Remember the node's name (for ``cluster``)."""
        self._node_name = node.name

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Nothing to run: ready at once."""
        task_status.started()

    async def leave_cluster(self) -> None:
        """Nothing to say goodbye to."""

    def route(self, node: str, payload: bytes) -> bool:
        """There is no other node: the envelope is lost (counted as a dead letter)."""
        return False

    def is_alive(self, node: str) -> bool:
        """Only this node exists."""
        return node == self._node_name

    def cluster(self) -> ClusterStatistics:
        """A cluster of one."""
        me = PeerInfo(self._node_name, True, 0.0)
        return ClusterStatistics(self._node_name, True, (me,), 0, 0, 0, 0, None)

    def addresses_on(self, node: str) -> list[Address]:
        """Every address of ``node`` that holds a name or a membership."""
        known = set(self._names_of) | set(self._groups_of)
        return [address for address in known if address.node == node]


def _discard(index: dict[Address, set[str]], address: Address, key: str) -> None:
    keys = index.get(address)
    if keys is not None:
        keys.discard(key)
        if not keys:
            del index[address]
