"""The GenServer behaviour and call: answers, state threaded through, stops, exits, timeouts."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

import actors
from actors import NO_REPLY, Caller, GenServer, StopServer


class Counter(GenServer[int]):
    """Counts: ``"add"`` calls answer the new total; casts and plain messages add too."""

    def __init__(self) -> None:
        self.terminated: list[tuple[actors.ExitReason, int]] = []
        self.inits = 0

    def init(self, start: int = 0) -> int:
        self.inits += 1
        return start

    def handle_call(self, request: Any, caller: Caller, state: int) -> Any:
        if request == "add":
            return state + 1, state + 1
        if request == "get":
            return state, state
        if request == "stop":
            return StopServer(state, answer="stopping")
        if request == "crash":
            raise RuntimeError("asked to crash")
        if request == "later":
            return NO_REPLY, state
        raise AssertionError(request)

    def handle_cast(self, message: Any, state: int) -> int:
        return state + message

    def handle_info(self, message: Any, state: int) -> Any:
        if isinstance(message, tuple) and message[0] == "reply":
            actors.reply(message[1], state)
            return state
        return state + 100

    def terminate(self, reason: actors.ExitReason, state: int) -> None:
        self.terminated.append((reason, state))


async def test_call_returns_the_answer_and_the_state_threads_through(node: actors.Node) -> None:
    async with trio.open_nursery() as nursery:
        counter = Counter().spawn(nursery, 10)
        assert await actors.call(counter, "add") == 11
        assert await actors.call(counter, "add") == 12
        actors.cast(counter, 5)
        actors.send(counter, "anything")
        assert await actors.call(counter, "get") == 117
        nursery.cancel_scope.cancel()


async def test_call_by_registered_name(node: actors.Node) -> None:
    async with trio.open_nursery() as nursery:
        Counter().spawn(nursery, name="counter")
        assert await actors.call("counter", "add") == 1
        nursery.cancel_scope.cancel()


async def test_call_to_an_unregistered_name_raises_no_such_actor(node: actors.Node) -> None:
    with pytest.raises(actors.NoSuchActor):
        await actors.call("nobody", "add")


class Keeper(GenServer[list[Caller]]):
    """Keeps every call waiting (but ``"sync"``) until a cast answers them all with it."""

    def init(self) -> list[Caller]:
        return []

    def handle_call(self, request: Any, caller: Caller, state: list[Caller]) -> Any:
        if request == "sync":
            return "synced", state
        return NO_REPLY, [*state, caller]

    def handle_cast(self, message: Any, state: list[Caller]) -> list[Caller]:
        for caller in state:
            actors.reply(caller, message)
        return []


async def test_an_answer_kept_waiting_comes_with_reply(node: actors.Node) -> None:
    async with trio.open_nursery() as nursery:
        keeper = Keeper().spawn(nursery)

        async def answer_once_called() -> None:
            await trio.testing.wait_all_tasks_blocked()
            actors.cast(keeper, "at last")

        nursery.start_soon(answer_once_called)
        assert await actors.call(keeper, "anything") == "at last"
        nursery.cancel_scope.cancel()


async def test_stop_answers_then_terminates_with_the_last_state(node: actors.Node) -> None:
    server = Counter()
    async with trio.open_nursery() as nursery:
        running = node.actor(server.spawn(nursery, 3))
        assert running is not None
        assert await actors.call(running.address, "stop") == "stopping"
        assert await running.wait() == actors.NORMAL
    assert server.terminated == [(actors.NORMAL, 3)]


async def test_call_timeout_raises_and_the_late_answer_is_never_a_stray_message(
    node: actors.Node, autojump_clock: trio.testing.MockClock
) -> None:
    """The late answer reaches no mailbox: the calling actor's stays empty; a dead letter."""
    async with trio.open_nursery() as nursery:
        keeper = Keeper().spawn(nursery)

        async def caller(actor: actors.Actor) -> None:
            with pytest.raises(actors.CallTimeout) as raised:
                await actors.call(keeper, "wait", timeout=2)
            assert raised.value.callee == keeper
            dead_before = node.dead_letters
            actors.cast(keeper, "too late")
            await actors.call(keeper, "sync")  # the cast was handled before this call
            assert node.dead_letters == dead_before + 1
            assert len(actor.mailbox) == 0

        await _run(node, caller)
        nursery.cancel_scope.cancel()


async def _run(node: actors.Node, fn: actors.ActorFunction) -> None:
    """Run ``fn`` as an actor to its end; its crash fails the test."""
    async with trio.open_nursery() as nursery:
        address = node.spawn(nursery, fn)
        reason = await node.wait(address)
    if isinstance(reason, actors.Crash):
        raise reason.exception


async def test_call_to_an_ended_actor_raises_noproc_at_once(
    node: actors.Node, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        counter = Counter().spawn(nursery)
        assert await actors.call(counter, "stop") == "stopping"
        await node.wait(counter)
        start = trio.current_time()
        with pytest.raises(actors.CalleeExited) as raised:
            await actors.call(counter, "add", timeout=60)
        assert raised.value.reason == actors.NOPROC
        assert trio.current_time() == start


async def test_call_to_a_callee_that_crashes_raises_at_once_with_the_crash(
    node: actors.Node, autojump_clock: trio.testing.MockClock
) -> None:
    server = Counter()
    async with trio.open_nursery() as nursery:
        counter = server.spawn(nursery, 4)
        start = trio.current_time()
        with pytest.raises(actors.CalleeExited) as raised:
            await actors.call(counter, "crash", timeout=60)
        assert isinstance(raised.value.reason, actors.Crash)
        assert str(raised.value.reason.exception) == "asked to crash"
        assert trio.current_time() == start
    assert [(type(reason), state) for reason, state in server.terminated] == [(actors.Crash, 4)]


async def test_call_to_a_callee_killed_while_it_handles_raises_killed(
    node: actors.Node, autojump_clock: trio.testing.MockClock
) -> None:
    class Slow(GenServer[None]):
        async def handle_call(self, request: Any, caller: Caller, state: None) -> Any:
            await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        slow = Slow().spawn(nursery)

        async def kill_once_called() -> None:
            await trio.testing.wait_all_tasks_blocked()
            actors.send_exit(slow, actors.KILLED)

        nursery.start_soon(kill_once_called)
        start = trio.current_time()
        with pytest.raises(actors.CalleeExited) as raised:
            await actors.call(slow, "anything", timeout=60)
        assert raised.value.reason == actors.KILLED
        assert trio.current_time() == start


async def test_async_callbacks_are_awaited(node: actors.Node) -> None:
    class Echo(GenServer[str]):
        async def init(self, prefix: str) -> str:
            await trio.lowlevel.checkpoint()
            return prefix

        async def handle_call(self, request: Any, caller: Caller, state: str) -> Any:
            await trio.lowlevel.checkpoint()
            return state + request, state

    async with trio.open_nursery() as nursery:
        echo = Echo().spawn(nursery, "> ")
        assert await actors.call(echo, "hi") == "> hi"
        nursery.cancel_scope.cancel()


async def test_a_linked_crash_stops_the_server_after_terminate(node: actors.Node) -> None:
    server = Counter()

    async def crasher(actor: actors.Actor) -> None:
        await actor.receive()
        raise RuntimeError("linked crash")

    async with trio.open_nursery() as nursery:
        counter = server.spawn(nursery, 2)
        doomed = node.spawn(nursery, crasher)
        node.actor(counter).link(doomed)  # type: ignore[union-attr]
        actors.send(doomed, "go")
        reason = await node.wait(counter)
    assert isinstance(reason, actors.Crash)
    assert [state for _, state in server.terminated] == [2]


async def test_a_trapping_server_gets_exits_in_handle_info(node: actors.Node) -> None:
    class Trapper(GenServer[list[Any]]):
        trap_exits = True

        def init(self) -> list[Any]:
            return []

        def handle_call(self, request: Any, caller: Caller, state: list[Any]) -> Any:
            return state, state

        def handle_info(self, message: Any, state: list[Any]) -> list[Any]:
            return [*state, message]

    async with trio.open_nursery() as nursery:
        trapper = Trapper().spawn(nursery)
        actors.send_exit(trapper, actors.SHUTDOWN)
        assert await actors.call(trapper, "get") == [actors.Exit(None, actors.SHUTDOWN)]
        nursery.cancel_scope.cancel()


async def test_a_supervised_server_restarts_after_a_crash_with_a_fresh_state(
    node: actors.Node,
) -> None:
    server = Counter()
    supervisor = actors.Supervisor([server.child_spec("counter", 50, name="counter")])
    async with trio.open_nursery() as nursery:
        root = await nursery.start(actors.supervise, supervisor)
        await actors.wait_for("counter")
        assert await actors.call("counter", "add") == 51
        first = actors.whereis("counter")
        with pytest.raises(actors.CalleeExited):
            await actors.call("counter", "crash")
        while actors.whereis("counter") in (None, first):
            await trio.testing.wait_all_tasks_blocked()
            await trio.sleep(0)
        assert await actors.call("counter", "add") == 51
        assert server.inits == 2
        actors.send_exit(root, actors.SHUTDOWN)
    assert [type(reason) for reason, _ in server.terminated] == [actors.Crash, actors.Shutdown]
