"""An ended actor is freed by reference counting alone: it leaves no reference cycle for the
cycle collector, whose full passes stall the loop when thousands of actors end at once."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
import trio

import actors


@pytest.fixture
def collector_off() -> Iterator[None]:
    """The cycle collector off for the test: what it would free would stay alive."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.parametrize("overflow", list(actors.Overflow))
async def test_an_ended_actor_is_freed_without_the_cycle_collector(
    node: actors.Node, collector_off: None, overflow: actors.Overflow
) -> None:
    async def wait_for_one(actor: actors.Actor) -> None:
        await actor.receive()

    async with trio.open_nursery() as nursery:
        address = node.spawn(nursery, wait_for_one, overflow=overflow)
        actor = node.actor(address)
        assert actor is not None
        ended = weakref.ref(actor)
        del actor
        node.send(address, "stop")
    assert ended() is None, "the actor outlived its task: a reference cycle holds it"
