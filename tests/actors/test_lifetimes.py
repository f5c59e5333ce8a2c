"""An ended actor is freed by reference counting alone: it leaves no reference cycle for the
cycle collector, whose full passes stall the loop when thousands of actors end at once."""

from __future__ import annotations

import weakref

import pytest
import trio

import actors


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
