"""Supervisors as OTP defines them: a fixed list of children and a restart strategy.

A supervisor is itself an actor that traps exits: children's crashes reach it as
``Down`` messages (never as exceptions in a shared nursery), so one child's crash
never cancels its siblings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import attrs
import trio

from . import children as _children
from .actor import Actor
from .address import Address
from .children import Child, ChildInfo
from .messages import Down, Exit
from .node import current_node
from .reasons import Crash, ExitReason
from .specs import ChildSpec, Restart, RestartIntensity, Strategy, should_restart


@attrs.define(eq=False)
class Supervisor:
    """Starts ``children`` in order and keeps them running by ``strategy``.

    Past ``intensity`` restarts in ``period`` seconds it stops every child (last
    started first) and fails with RestartIntensityExceeded, to its own supervisor.
    """

    children: Sequence[ChildSpec]
    strategy: Strategy = Strategy.ONE_FOR_ONE
    intensity: int = 3
    period: float = 5.0
    _running: list[Child] = attrs.field(factory=list, init=False)

    def __attrs_post_init__(self) -> None:
        ids = [spec.id for spec in self.children]
        if len(set(ids)) != len(ids):
            raise ValueError(f"child ids must be unique within a supervisor: {ids}")
        RestartIntensity(self.intensity, self.period)

    def child_spec(self, id: str, *, restart: Restart = Restart.PERMANENT) -> ChildSpec:
        """A spec that runs this supervisor under another one."""
        return ChildSpec(id, self.run, restart=restart, shutdown=math.inf, trap_exits=True)

    def which_children(self) -> list[tuple[str, Address | None]]:
        """Each child's id and address (None while it is not running)."""
        return [(child.spec.id, child.address) for child in self._running]

    def children_info(self) -> list[ChildInfo]:
        """Each child's id, kind, address (None while not running) and restarts, in order."""
        return [child.info() for child in self._running]

    async def run(self, actor: Actor) -> None:
        """The supervisor's actor body."""
        actor.trap_exits = True
        intensity = RestartIntensity(self.intensity, self.period)
        self._running = [Child(spec) for spec in self.children]
        with actor.node.supervising(actor.address, self):
            await self._supervise(actor, intensity)

    async def _supervise(self, actor: Actor, intensity: RestartIntensity) -> None:
        async with trio.open_nursery() as nursery:
            for child in self._running:
                _children.start(actor, nursery, child)
            async for msg in actor:
                if isinstance(msg, Exit):
                    await _children.stop_in_reverse(actor, self._running)
                    actor.exit(msg.reason)
                if isinstance(msg, Down):
                    ended = _children.find(self._running, msg.ref)
                    if ended is not None:
                        await self._child_ended(actor, nursery, intensity, ended, msg.reason)

    async def _child_ended(
        self,
        actor: Actor,
        nursery: trio.Nursery,
        intensity: RestartIntensity,
        child: Child,
        reason: ExitReason,
    ) -> None:
        child.address = child.monitor = None
        if should_restart(child.spec.restart, reason):
            if not intensity.allow(trio.current_time()):
                await _children.stop_in_reverse(actor, self._running)
                raise _children.gave_up(actor, intensity, child, reason)
            affected = self._affected_by(child)
            await _children.stop_in_reverse(actor, affected)
            for sibling in affected:
                if sibling is child or sibling.spec.restart is not Restart.TEMPORARY:
                    if not _children.restart(actor, nursery, sibling, intensity):
                        await _children.stop_in_reverse(actor, self._running)
                        raise _children.gave_up(actor, intensity, sibling, reason)
        self._running = [
            c
            for c in self._running
            if c.address is not None or c.spec.restart is not Restart.TEMPORARY
        ]

    def _affected_by(self, child: Child) -> list[Child]:
        if self.strategy is Strategy.ONE_FOR_ONE:
            return [child]
        if self.strategy is Strategy.ONE_FOR_ALL:
            return list(self._running)
        return self._running[self._running.index(child) :]


async def supervise(
    supervisor: Supervisor,
    *,
    name: str | None = None,
    task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED,
) -> ExitReason:
    """Run ``supervisor`` as a root actor until it ends; raise what made it give up.

    Use with ``nursery.start`` to get its address; stop it gracefully with
    ``node.exit(address, SHUTDOWN)``.
    """
    node = current_node()
    async with trio.open_nursery() as nursery:
        address = node.spawn(nursery, supervisor.run, name=name, kind="supervisor", trap_exits=True)
        task_status.started(address)
        reason = await node.wait(address)
    if isinstance(reason, Crash):
        raise reason.exception
    return reason
