"""A dynamic supervisor: children added at run time (one per connection, say)."""

from __future__ import annotations

import math
from typing import Any

import attrs
import trio

from . import children as _children
from .actor import Actor
from .address import Address
from .children import Child, ChildInfo
from .errors import ActorError
from .messages import Down, Exit, MonitorRef
from .specs import ChildSpec, RestartIntensity, should_restart


class SupervisorNotRunning(ActorError):
    """start_child was called while the dynamic supervisor is not running."""


class TooManyChildren(ActorError):
    """The dynamic supervisor already has ``max_children`` children."""


@attrs.define(eq=False)
class DynamicSupervisor:
    """Supervises children started with ``start_child``, each one for one.

    On shutdown it stops its children last-started first, ``shutdown_batch`` at a time
    concurrently, so ten thousand children do not all stop at once nor one by one.
    """

    intensity: int = 3
    period: float = 5.0
    max_children: int | None = None
    shutdown_batch: int = 100
    _actor: Actor | None = attrs.field(default=None, init=False)
    _nursery: trio.Nursery | None = attrs.field(default=None, init=False)
    _children: dict[MonitorRef, Child] = attrs.field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        RestartIntensity(self.intensity, self.period)
        if self.shutdown_batch < 1:
            raise ValueError("shutdown_batch must be >= 1")

    def child_spec(self, id: str) -> ChildSpec:
        """A spec that runs this dynamic supervisor under another supervisor."""
        return ChildSpec(id, self.run, shutdown=math.inf, trap_exits=True)

    def start_child(self, spec: ChildSpec, *extra_args: Any) -> Address:
        """Start ``spec.start(actor, *spec.args, *extra_args)`` as a supervised child."""
        if self._actor is None or self._nursery is None:
            raise SupervisorNotRunning("the dynamic supervisor is not running; start it first")
        if self.max_children is not None and len(self._children) >= self.max_children:
            raise TooManyChildren(f"already {self.max_children} children")
        child = Child(spec, extra_args)
        address = _children.start(self._actor, self._nursery, child)
        assert child.monitor is not None
        self._children[child.monitor] = child
        return address

    def count_children(self) -> int:
        """How many children are running."""
        return len(self._children)

    def which_children(self) -> list[tuple[str, Address]]:
        """Each running child's id and address, in start order."""
        return [(c.spec.id, c.address) for c in self._children.values() if c.address is not None]

    def children_info(self) -> list[ChildInfo]:
        """Each running child's id, kind, address and restarts, in start order."""
        return [child.info() for child in self._children.values()]

    async def run(self, actor: Actor) -> None:
        """The dynamic supervisor's actor body."""
        actor.trap_exits = True
        intensity = RestartIntensity(self.intensity, self.period)
        try:
            with actor.node.supervising(actor.address, self):
                await self._supervise(actor, intensity)
        finally:
            self._actor = self._nursery = None
            self._children.clear()

    async def _supervise(self, actor: Actor, intensity: RestartIntensity) -> None:
        async with trio.open_nursery() as nursery:
            self._actor, self._nursery = actor, nursery
            async for msg in actor:
                if isinstance(msg, Exit):
                    await self._stop_all(actor)
                    actor.exit(msg.reason)
                if isinstance(msg, Down) and msg.ref in self._children:
                    child = self._children.pop(msg.ref)
                    await self._child_ended(actor, intensity, child, msg)

    async def _child_ended(
        self, actor: Actor, intensity: RestartIntensity, child: Child, down: Down
    ) -> None:
        child.address = child.monitor = None
        if not should_restart(child.spec.restart, down.reason):
            return
        nursery = self._nursery
        assert nursery is not None
        if not intensity.allow(trio.current_time()) or not _children.restart(
            actor, nursery, child, intensity
        ):
            await self._stop_all(actor)
            raise _children.gave_up(actor, intensity, child, down.reason)
        assert child.monitor is not None
        self._children[child.monitor] = child

    async def _stop_all(self, actor: Actor) -> None:
        self._nursery = None  # refuse new children while stopping
        running = list(self._children.values())
        self._children.clear()
        await _children.stop_in_reverse(actor, running, self.shutdown_batch)
