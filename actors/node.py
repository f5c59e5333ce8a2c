"""A node: the actor table, names and groups, dead letters and the timer service.

One node runs per process (``async with open_node():``); everything that sends or
spawns finds it through the context, as Erlang code finds its node.
"""

from __future__ import annotations

import contextvars
import itertools
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from .actor import Actor, ActorFunction, current_actor
from .address import Address
from .backend import Backend, LocalBackend
from .errors import NoNode, NoSuchActor
from .mailbox import Overflow
from .reasons import KILLED, NOPROC, ExitReason
from .timers import TimerService

Destination = Address | str
"""Where a message goes: an actor's address, or a registered name."""

DEFAULT_CAPACITY = 1024

_current_node: contextvars.ContextVar[Node] = contextvars.ContextVar("corral_node")


def current_node() -> Node:
    """The node this code runs under (NoNode outside ``open_node``)."""
    try:
        return _current_node.get()
    except LookupError:
        raise NoNode() from None


@attrs.frozen
class ActorInfo:
    """One live actor, for introspection."""

    address: Address
    names: tuple[str, ...]
    kind: str
    mailbox_length: int
    capacity: int
    received: int
    dropped: int
    started_at: float


@attrs.frozen
class NodeStatistics:
    """Counters for a whole node."""

    actors: int
    timers: int
    dead_letters: int


class Node:
    """Holds every live actor of this process and routes messages between them."""

    def __init__(self, name: str = "local", backend: Backend | None = None) -> None:
        self.name = name
        self.backend: Backend = backend if backend is not None else LocalBackend()
        self.timers = TimerService()
        self.dead_letters = 0
        self.restarts = 0
        """Children restarted by this node's supervisors (each restart, for metrics)."""
        self._actors: dict[Address, Actor] = {}
        self._serials = itertools.count(1)

    # ---- actors ---------------------------------------------------------------------

    def spawn(
        self,
        nursery: trio.Nursery,
        fn: ActorFunction,
        *args: Any,
        name: str | None = None,
        capacity: int = DEFAULT_CAPACITY,
        overflow: Overflow = Overflow.DROP_NEWEST,
        kind: str | None = None,
        trap_exits: bool = False,
        link: bool = False,
    ) -> Address:
        """Start ``fn(actor, *args)`` as an actor in ``nursery``; return its address at once.

        Messages sent before the task first runs wait in its mailbox. ``name`` registers
        it (NameTaken if held); ``link=True`` links it to the calling actor.
        """
        kind_name = kind or str(getattr(fn, "__qualname__", type(fn).__name__))
        address = Address(self.name, next(self._serials), name or kind_name)
        actor = Actor(
            self,
            address,
            capacity=capacity,
            overflow=overflow,
            kind=kind_name,
            trap_exits=trap_exits,
        )
        if name is not None:
            self.backend.register(name, address)
        self._actors[address] = actor
        if link:
            current_actor().link(address)
        nursery.start_soon(actor.run, fn, args, name=f"actor {address}")
        return address

    def actor(self, address: Address) -> Actor | None:
        """The live actor at ``address`` on this node, or None."""
        return self._actors.get(address)

    def exit(self, address: Address, reason: ExitReason) -> None:
        """Send an exit signal (Erlang's exit/2); ``killed`` cannot be trapped."""
        actor = self._actors.get(address)
        if actor is None:
            return
        if reason == KILLED:
            actor.terminate(KILLED)
        else:
            actor.signal_exit(None, reason)

    async def wait(self, address: Address) -> ExitReason:
        """Wait for the actor at ``address`` to end; noproc if it is already gone."""
        actor = self._actors.get(address)
        if actor is None:
            return NOPROC
        return await actor.wait()

    def forget(self, actor: Actor) -> None:
        """Remove an ended actor from the table, its names and its groups."""
        self._actors.pop(actor.address, None)
        self.backend.forget(actor.address)

    # ---- messages -------------------------------------------------------------------

    def send(self, dest: Destination, msg: Any) -> bool:
        """Queue ``msg`` for ``dest`` without ever waiting.

        Returns whether the mailbox took it (its overflow policy decides when full;
        ``fail`` raises MailboxFull). An ended address is a counted no-op; an unknown
        name raises NoSuchActor.
        """
        actor = self._actors.get(dest) if type(dest) is Address else self._named(dest)
        if actor is None:
            self.dead_letters += 1
            return False
        return actor.mailbox.put_nowait(msg)

    async def send_wait(self, dest: Destination, msg: Any) -> bool:
        """Queue ``msg`` for ``dest``, waiting for room in its mailbox (backpressure)."""
        actor = self._actors.get(dest) if type(dest) is Address else self._named(dest)
        if actor is None or not await actor.mailbox.put(msg):
            self.dead_letters += 1
            return False
        return True

    def notify(self, dest: Destination, msg: Any) -> bool:
        """Deliver a runtime notification (timer, Down): never dropped, never raises."""
        try:
            actor = self._actors.get(dest) if type(dest) is Address else self._named(dest)
        except NoSuchActor:
            actor = None
        if actor is None or not actor.mailbox.put_system(msg):
            self.dead_letters += 1
            return False
        return True

    def _named(self, dest: Destination) -> Actor | None:
        if not isinstance(dest, str):
            raise TypeError(f"send to an Address or a registered name, not {dest!r}")
        address = self.backend.whereis(dest)
        if address is None:
            raise NoSuchActor(dest)
        return self._actors.get(address)

    # ---- names ----------------------------------------------------------------------

    def register(self, name: str, address: Address) -> None:
        """Bind ``name`` to a live actor (NameTaken if another holds it)."""
        if address not in self._actors:
            raise NoSuchActor(name, f" (cannot register: {address} has ended)")
        self.backend.register(name, address)

    def unregister(self, name: str) -> None:
        """Remove a name."""
        self.backend.unregister(name)

    def whereis(self, name: str) -> Address | None:
        """The address registered as ``name``, or None."""
        return self.backend.whereis(name)

    async def wait_for(self, name: str, timeout: float = math.inf) -> Address:
        """Wait until ``name`` is registered; NoSuchActor after ``timeout`` seconds."""
        with trio.move_on_after(timeout):
            return await self.backend.wait_registered(name)
        raise NoSuchActor(name, f" (waited {timeout} s)")

    # ---- groups ---------------------------------------------------------------------

    def join(self, group: str, address: Address) -> None:
        """Add a live actor to ``group``; it leaves by itself when it ends."""
        if address not in self._actors:
            raise NoSuchActor(group, f" (cannot join: {address} has ended)")
        self.backend.join(group, address)

    def leave(self, group: str, address: Address) -> None:
        """Remove ``address`` from ``group``."""
        self.backend.leave(group, address)

    def members(self, group: str) -> list[Address]:
        """The members of ``group``, in join order."""
        return self.backend.members(group)

    def which_groups(self) -> list[str]:
        """Every group that has members."""
        return self.backend.which_groups()

    def publish(self, group: str, msg: Any) -> int:
        """Offer ``msg`` to every member; return how many mailboxes took it.

        Never waits and never raises for a full member: each member's own overflow
        policy applies, so one slow member costs the others nothing.
        """
        taken = 0
        for address in self.backend.members(group):
            actor = self._actors.get(address)
            if actor is not None and actor.mailbox.offer(msg):
                taken += 1
        return taken

    # ---- introspection ----------------------------------------------------------------

    def actors(self) -> list[ActorInfo]:
        """Every live actor with its mailbox figures."""
        return [
            _info(actor, tuple(self.backend.names_of(actor.address)))
            for actor in self._actors.values()
        ]

    def statistics(self) -> NodeStatistics:
        """Live actors, pending timers, dead letters."""
        return NodeStatistics(
            actors=len(self._actors), timers=len(self.timers), dead_letters=self.dead_letters
        )


def _info(actor: Actor, names: tuple[str, ...]) -> ActorInfo:
    stats = actor.mailbox.statistics()
    return ActorInfo(
        address=actor.address,
        names=names,
        kind=actor.kind,
        mailbox_length=stats.length,
        capacity=stats.capacity,
        received=stats.received,
        dropped=stats.dropped,
        started_at=actor.started_at,
    )


@asynccontextmanager
async def open_node(name: str = "local", backend: Backend | None = None) -> AsyncIterator[Node]:
    """Run a node for the duration of the block: its timer service, and the context."""
    node = Node(name, backend)
    token = _current_node.set(node)
    try:
        async with trio.open_nursery() as system:
            system.start_soon(node.timers.run, name="corral timer service")
            yield node
            system.cancel_scope.cancel()
    finally:
        _current_node.reset(token)
