"""Starting, watching and stopping a supervisor's children (shared by both supervisors)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import trio

from .actor import Actor
from .address import Address
from .messages import MonitorRef
from .reasons import KILLED, SHUTDOWN
from .specs import ChildSpec


@attrs.define(eq=False)
class Child:
    """A child as its supervisor sees it: its spec and, while it runs, its address."""

    spec: ChildSpec
    extra_args: tuple[Any, ...] = ()
    address: Address | None = None
    monitor: MonitorRef | None = None


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
