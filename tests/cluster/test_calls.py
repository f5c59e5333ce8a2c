"""call across two nodes on Redis: answers, crashes, late answers, and a node that dies."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio
import trio.testing

import actors
from actors import NO_REPLY, Caller, GenServer

from .conftest import backend_of, two_nodes
from .node_process import node_in_process


@actors.wire_type
@attrs.frozen
class Total:
    """An answer of a registered type: it crosses the wire as such."""

    value: int


class Adder(GenServer[int]):
    """Adds what it is called with; keeps ``"wait"`` calls unanswered until a cast answers."""

    def init(self) -> int:
        return 0

    def handle_call(self, request: Any, caller: Caller, state: Any) -> Any:
        if request == "crash":
            raise RuntimeError("asked to crash")
        if request == "wait":
            self.kept = caller
            return NO_REPLY, state
        return Total(state + request), state + request

    def handle_cast(self, message: Any, state: int) -> int:
        actors.reply(self.kept, message)
        return state


async def test_call_to_a_name_on_another_node_answers_across_the_wire(redis_url, prefix):
    async with two_nodes(redis_url, prefix) as (a, b, nursery):
        b.spawn(nursery, Adder().run, name="adder")
        await a.wait_for("adder", timeout=5)
        assert await a.call("adder", 2) == Total(2)
        assert await a.call("adder", 3) == Total(5)


async def test_a_remote_callee_that_crashes_raises_at_once_with_its_crash(redis_url, prefix):
    async with two_nodes(redis_url, prefix) as (a, b, nursery):
        await backend_of(a).wait_until(lambda: a.backend.is_alive("b"))
        adder = b.spawn(nursery, Adder().run)
        with pytest.raises(actors.CalleeExited) as raised:
            await a.call(adder, "crash", timeout=60)
        reason = raised.value.reason
        assert isinstance(reason, actors.Crash)
        assert "asked to crash" in str(reason.exception)


async def test_a_late_answer_from_another_node_is_dropped(redis_url, prefix):
    async with two_nodes(redis_url, prefix) as (a, b, nursery):
        await backend_of(a).wait_until(lambda: a.backend.is_alive("b"))
        adder = b.spawn(nursery, Adder().run)
        with pytest.raises(actors.CallTimeout):
            await a.call(adder, "wait", timeout=0.2)
        dead_before = a.dead_letters
        b.send(adder, actors.Cast("too late"))
        await backend_of(a).wait_until(lambda: a.dead_letters == dead_before + 1)
        assert await a.call(adder, 1) == Total(1)


async def test_a_call_to_a_node_that_dies_raises_noconnection_at_once(redis_url, prefix):
    async with (
        two_nodes(redis_url, prefix) as (a, _, _nursery),
        node_in_process("tests.cluster.node_process", redis_url, prefix, "doomed") as process,
    ):
        victim = await a.wait_for("victim", timeout=5)  # an actor that never answers
        async with trio.open_nursery() as calling:
            calling.start_soon(_kill_once_blocked, process)
            with pytest.raises(actors.CalleeExited) as raised:
                await a.call(victim, "anything", timeout=600)
        assert raised.value.reason == actors.NOCONNECTION


async def _kill_once_blocked(process: trio.Process) -> None:
    """Kill the node once the call has gone out (everything here waits for an answer)."""
    await trio.testing.wait_all_tasks_blocked()
    process.kill()
