"""Starting, watching and stopping a supervisor's children (shared by both supervisors)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import attrs
import trio

from .actor import Actor
from .address import Address
from .errors import NameTaken, RestartIntensityExceeded
from .messages import MonitorRef
from .reasons import KILLED, SHUTDOWN, ExitReason
from .specs import ChildSpec, RestartIntensity

logger = logging.getLogger("corral.actors")


@attrs.define(eq=False)
class Child:
    """A child as its supervisor sees it: its spec and, while it runs, its address."""

    spec: ChildSpec
    extra_args: tuple[Any, ...] = ()
    address: Address | None = None
    monitor: MonitorRef | None = None
    restarts: int = 0
    """Times its supervisor has started it again."""

    def info(self) -> ChildInfo:
        """This child as introspection shows it."""
        return ChildInfo(self.spec.id, self.spec.kind or self.spec.id, self.address, self.restarts)


@attrs.frozen
class ChildInfo:
    """One child of a supervisor, for introspection: its id, kind, address while it runs,
    and how many times it was restarted."""

    id: str
    kind: str
    address: Address | None
    restarts: int


def start(supervisor: Actor, nursery: trio.Nursery, child: Child) -> Address:
    """Spawn ``child`` in the supervisor's nursery and monitor it."""
    spec = child.spec
    child.address = supervisor.node.spawn(
        nursery,
        spec.start,
        *spec.args,
        *child.extra_args,
        name=spec.name,
        capacity=spec.capacity,
        overflow=spec.overflow,
        kind=spec.kind or spec.id,
        trap_exits=spec.trap_exits,
    )
    child.monitor = supervisor.monitor(child.address)
    return child.address


def restart(
    supervisor: Actor, nursery: trio.Nursery, child: Child, intensity: RestartIntensity
) -> bool:
    """Start ``child`` again; False once restarting has cost more than ``intensity`` allows.

    A start refused because its name is still taken (another actor registered it meanwhile)
    counts as one more restart and is tried again, as OTP retries a failed restart.
    """
    logger.info("%s restarting child %r", supervisor.address, child.spec.id)
    supervisor.node.restarts += 1
    child.restarts += 1
    while True:
        try:
            start(supervisor, nursery, child)
            return True
        except NameTaken as exc:
            logger.error("%s could not restart %r: %s", supervisor.address, child.spec.id, exc)
            if not intensity.allow(trio.current_time()):
                return False


def gave_up(
    supervisor: Actor, intensity: RestartIntensity, child: Child, reason: ExitReason
) -> RestartIntensityExceeded:
    """The error a supervisor fails with when restarts exceed its intensity."""
    return RestartIntensityExceeded(
        f"supervisor {supervisor.address} gave up: more than {intensity.describe()}; "
        f"last, child {child.spec.id!r} ended with {reason}"
    )


async def stop(supervisor: Actor, child: Child) -> None:
    """Ask ``child`` to shut down; kill it if it has not ended within its shutdown time."""
    if child.monitor is not None:
        supervisor.demonitor(child.monitor)
    address, child.address, child.monitor = child.address, None, None
    target = supervisor.node.actor(address) if address is not None else None
    if target is None:
        return
    target.signal_exit(supervisor.address, SHUTDOWN)
    with trio.move_on_after(child.spec.shutdown):
        await target.wait()
        return
    target.terminate(KILLED)
    await target.wait()


async def stop_in_reverse(supervisor: Actor, children: Sequence[Child], batch: int = 1) -> None:
    """Stop running children last-started first, ``batch`` at a time concurrently."""
    running = [child for child in reversed(children) if child.address is not None]
    for first in range(0, len(running), batch):
        async with trio.open_nursery() as nursery:
            for child in running[first : first + batch]:
                nursery.start_soon(stop, supervisor, child)


def find(children: Sequence[Child], ref: MonitorRef) -> Child | None:
    """The child whose monitor is ``ref``."""
    for child in children:
        if child.monitor is ref:
            return child
    return None
