"""Small actors for runtime tests: one that records what it gets, one idle, one that crashes."""

from __future__ import annotations

import pathlib
from typing import Any

import trio

import actors


class Recorder:
    """An actor body that appends every message it receives to ``messages``."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.changed = trio.Event()

    async def __call__(self, actor: actors.Actor) -> None:
        async for msg in actor:
            self.messages.append(msg)
            self.changed.set()
            self.changed = trio.Event()

    async def wait_for_count(self, count: int) -> list[Any]:
        while len(self.messages) < count:
            await self.changed.wait()
        return self.messages


async def idle(actor: actors.Actor) -> None:
    """An actor that only waits (its mailbox fills if nobody drains it)."""
    await trio.sleep_forever()


async def crash_on(actor: actors.Actor) -> None:
    """An actor that crashes with the first message it receives."""
    msg = await actor.receive()
    raise RuntimeError(f"asked to crash: {msg}")


async def run_actor(fn: actors.ActorFunction, *args: Any, **options: Any) -> actors.ExitReason:
    """Run one actor to its end; re-raise its crash so assertions inside it fail the test."""
    node = actors.current_node()
    async with trio.open_nursery() as nursery:
        address = node.spawn(nursery, fn, *args, **options)
        reason = await node.wait(address)
    if isinstance(reason, actors.Crash):
        raise reason.exception
    return reason


def raise_crash(reason: actors.ExitReason) -> None:
    """Re-raise the exception behind a Crash reason (for actors run in a test's nursery)."""
    if isinstance(reason, actors.Crash):
        raise reason.exception


class Marker:
    """Unpickling one creates the file at ``path``: the attack a pickled cluster wire allowed
    (a real attacker would run a shell command instead)."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (pathlib.Path.touch, (self.path,))
