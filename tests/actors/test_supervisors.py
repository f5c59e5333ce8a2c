"""Supervisors: strategies, restart types, intensity, ordered shutdown, dynamic children."""

from __future__ import annotations

import logging
import math

import pytest
import trio
import trio.testing

import actors
from actors import ChildSpec, DynamicSupervisor, Restart, Strategy, Supervisor
from actors.specs import RestartIntensity, should_restart

from .kit import crash_on, idle


class Journal:
    """Records starts and stops of named children, in order."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def worker(self, label: str) -> actors.ActorFunction:
        async def body(actor: actors.Actor) -> None:
            self.events.append(f"start {label}")
            try:
                msg = await actor.receive()
                if msg == "crash":
                    raise RuntimeError(f"{label} crashed on purpose")
            finally:
                self.events.append(f"stop {label}")

        return body


async def _settle() -> None:
    await trio.testing.wait_all_tasks_blocked()


def _specs(journal: Journal, *labels: str, restart: Restart = Restart.PERMANENT) -> list[ChildSpec]:
    return [
        ChildSpec(label, journal.worker(label), name=label, restart=restart) for label in labels
    ]


async def _run_tree(nursery: trio.Nursery, supervisor: Supervisor) -> actors.Address:
    address: actors.Address = await nursery.start(actors.supervise, supervisor)
    await _settle()
    return address


async def test_one_for_one_restarts_only_the_crashed_child(node: actors.Node) -> None:
    journal = Journal()
    async with trio.open_nursery() as nursery:
        await _run_tree(nursery, Supervisor(_specs(journal, "a", "b", "c")))
        b_before = actors.whereis("b")
        journal.events.clear()
        actors.send("b", "crash")
        await _settle()
        assert journal.events == ["stop b", "start b"]
        assert actors.whereis("b") not in (None, b_before)
        nursery.cancel_scope.cancel()


async def test_one_for_all_restarts_every_child(node: actors.Node) -> None:
    journal = Journal()
    async with trio.open_nursery() as nursery:
        await _run_tree(nursery, Supervisor(_specs(journal, "a", "b", "c"), Strategy.ONE_FOR_ALL))
        journal.events.clear()
        actors.send("b", "crash")
        await _settle()
        # Stops are ordered (last started first); trio runs new tasks in any order.
        assert journal.events[:3] == ["stop b", "stop c", "stop a"]
        assert sorted(journal.events[3:]) == ["start a", "start b", "start c"]
        nursery.cancel_scope.cancel()


async def test_rest_for_one_restarts_the_child_and_those_after_it(node: actors.Node) -> None:
    journal = Journal()
    async with trio.open_nursery() as nursery:
        await _run_tree(nursery, Supervisor(_specs(journal, "a", "b", "c"), Strategy.REST_FOR_ONE))
        journal.events.clear()
        actors.send("b", "crash")
        await _settle()
        assert journal.events[:2] == ["stop b", "stop c"]
        assert sorted(journal.events[2:]) == ["start b", "start c"]
        nursery.cancel_scope.cancel()


async def test_a_crash_never_cancels_siblings_and_is_logged_with_identity(
    node: actors.Node, caplog: pytest.LogCaptureFixture
) -> None:
    journal = Journal()
    async with trio.open_nursery() as nursery:
        await _run_tree(nursery, Supervisor(_specs(journal, "a", "b")))
        a_before = actors.whereis("a")
        actors.send("b", "crash")
        await _settle()
        assert actors.whereis("a") == a_before
        nursery.cancel_scope.cancel()
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "'b'" in record.getMessage() and "crashed" in record.getMessage()
    assert record.exc_info is not None and "b crashed on purpose" in str(record.exc_info[1])


async def test_transient_children_restart_only_after_abnormal_exits(node: actors.Node) -> None:
    journal = Journal()
    async with trio.open_nursery() as nursery:
        sup = Supervisor(_specs(journal, "t", restart=Restart.TRANSIENT))
        await _run_tree(nursery, sup)
        actors.send("t", "crash")
        await _settle()
        assert journal.events == ["start t", "stop t", "start t"]
        actors.send("t", "finish normally")
        await _settle()
        assert journal.events[-1] == "stop t" and actors.whereis("t") is None
        assert sup.which_children() == [("t", None)]
        nursery.cancel_scope.cancel()


async def test_temporary_children_are_never_restarted(node: actors.Node) -> None:
    journal = Journal()
    async with trio.open_nursery() as nursery:
        sup = Supervisor(_specs(journal, "once", restart=Restart.TEMPORARY))
        await _run_tree(nursery, sup)
        actors.send("once", "crash")
        await _settle()
        assert journal.events == ["start once", "stop once"]
        assert sup.which_children() == []
        nursery.cancel_scope.cancel()


async def test_past_the_restart_intensity_the_supervisor_stops_children_and_fails_upward(
    node: actors.Node, autojump_clock: trio.testing.MockClock
) -> None:
    journal = Journal()
    sup = Supervisor(_specs(journal, "steady", "flaky"), intensity=3, period=5)
    gave_up = pytest.RaisesExc(actors.RestartIntensityExceeded, match="more than 3 restarts in 5 s")
    with pytest.RaisesGroup(gave_up, flatten_subgroups=True):
        async with trio.open_nursery() as nursery:
            await _run_tree(nursery, sup)
            for _ in range(4):
                actors.send("flaky", "crash")
                await trio.sleep(1)
    assert journal.events[-2:] == ["stop flaky", "stop steady"]
    assert node.statistics().actors == 0


async def test_restarts_spread_beyond_the_period_are_allowed(
    node: actors.Node, autojump_clock: trio.testing.MockClock
) -> None:
    journal = Journal()
    async with trio.open_nursery() as nursery:
        await _run_tree(nursery, Supervisor(_specs(journal, "flaky"), intensity=3, period=5))
        for _ in range(10):
            actors.send("flaky", "crash")
            await trio.sleep(2)
        assert journal.events.count("start flaky") == 11
        nursery.cancel_scope.cancel()


async def test_shutdown_stops_children_in_reverse_start_order(node: actors.Node) -> None:
    journal = Journal()
    async with trio.open_nursery() as nursery:
        root = await _run_tree(nursery, Supervisor(_specs(journal, "a", "b", "c")))
        journal.events.clear()
        actors.send_exit(root, actors.SHUTDOWN)
        assert await node.wait(root) == actors.SHUTDOWN
    assert journal.events == ["stop c", "stop b", "stop a"]


async def test_a_child_that_ignores_shutdown_is_killed_after_its_timeout(
    node: actors.Node, autojump_clock: trio.testing.MockClock
) -> None:
    async def stubborn(actor: actors.Actor) -> None:
        actor.trap_exits = True
        await trio.sleep_forever()

    spec = ChildSpec("stubborn", stubborn, shutdown=2.0, trap_exits=True, name="stubborn")
    async with trio.open_nursery() as nursery:
        root = await _run_tree(nursery, Supervisor([spec]))
        child = actors.whereis("stubborn")
        assert child is not None
        started = trio.current_time()
        actors.send_exit(root, actors.SHUTDOWN)
        assert await node.wait(child) == actors.KILLED
        assert trio.current_time() - started == pytest.approx(2.0)


async def test_nested_supervisors_restart_a_crashed_subtree(node: actors.Node) -> None:
    journal = Journal()
    inner = Supervisor(_specs(journal, "leaf"))
    async with trio.open_nursery() as nursery:
        await _run_tree(nursery, Supervisor([inner.child_spec("inner")]))
        assert journal.events == ["start leaf"]
        actors.send("leaf", "crash")
        await _settle()
        assert journal.events == ["start leaf", "stop leaf", "start leaf"]
        nursery.cancel_scope.cancel()


async def test_duplicate_child_ids_are_refused() -> None:
    journal = Journal()
    with pytest.raises(ValueError, match="unique"):
        Supervisor(_specs(journal, "a", "a"))


async def test_dynamic_supervisor_starts_children_at_run_time_with_extra_args(
    node: actors.Node,
) -> None:
    greetings: list[str] = []

    async def greeter(actor: actors.Actor, greeting: str, who: str) -> None:
        greetings.append(f"{greeting}, {who}")
        await trio.sleep_forever()

    dynamic = DynamicSupervisor(max_children=2)
    spec = ChildSpec("greeter", greeter, args=("hello",), restart=Restart.TEMPORARY)
    async with trio.open_nursery() as nursery:
        await _run_tree(nursery, Supervisor([dynamic.child_spec("connections")]))
        first = dynamic.start_child(spec, "ann")
        dynamic.start_child(spec, "bob")
        with pytest.raises(actors.TooManyChildren):
            dynamic.start_child(spec, "cy")
        await _settle()
        assert sorted(greetings) == ["hello, ann", "hello, bob"]
        actors.send_exit(first, actors.KILLED)
        await _settle()
        assert dynamic.count_children() == 1
        nursery.cancel_scope.cancel()


async def test_dynamic_supervisor_restarts_permanent_children_and_stops_in_batches(
    node: actors.Node,
) -> None:
    journal = Journal()
    dynamic = DynamicSupervisor(shutdown_batch=2)
    async with trio.open_nursery() as nursery:
        root = await _run_tree(nursery, Supervisor([dynamic.child_spec("dyn")]))
        for label in "abcde":
            dynamic.start_child(ChildSpec(label, journal.worker(label), name=label))
        await _settle()
        actors.send("c", "crash")
        await _settle()
        assert journal.events[-2:] == ["stop c", "start c"]
        journal.events.clear()
        actors.send_exit(root, actors.SHUTDOWN)
        await node.wait(root)
    stops = journal.events
    assert sorted(stops[:2]) == ["stop c", "stop e"] and sorted(stops[2:4]) == ["stop b", "stop d"]
    assert stops[4:] == ["stop a"]


async def test_start_child_on_a_stopped_dynamic_supervisor_says_so(node: actors.Node) -> None:
    with pytest.raises(actors.SupervisorNotRunning):
        DynamicSupervisor().start_child(ChildSpec("x", idle))


def test_restart_intensity_counts_restarts_in_a_sliding_window() -> None:
    intensity = RestartIntensity(max_restarts=2, period=10)
    assert [intensity.allow(t) for t in (0, 1, 2)] == [True, True, False]
    fresh = RestartIntensity(max_restarts=2, period=10)
    assert [fresh.allow(t) for t in (0, 5, 10, 15, 20)] == [True] * 5


def test_should_restart_follows_otp_restart_types() -> None:
    crash = actors.Crash(RuntimeError())
    table = {
        (Restart.PERMANENT, actors.NORMAL): True,
        (Restart.PERMANENT, crash): True,
        (Restart.TRANSIENT, actors.NORMAL): False,
        (Restart.TRANSIENT, actors.SHUTDOWN): False,
        (Restart.TRANSIENT, crash): True,
        (Restart.TRANSIENT, actors.KILLED): True,
        (Restart.TEMPORARY, crash): False,
    }
    for (restart, reason), expected in table.items():
        assert should_restart(restart, reason) is expected, (restart, reason)


def test_child_spec_refuses_a_negative_shutdown() -> None:
    with pytest.raises(ValueError, match="shutdown"):
        ChildSpec("x", idle, shutdown=-1)
    assert ChildSpec("x", idle, shutdown=math.inf).shutdown == math.inf


async def test_a_dynamic_supervisor_counts_right_when_more_children_end_than_its_mailbox_holds(
    node: actors.Node,
) -> None:
    dynamic = DynamicSupervisor()
    spec = ChildSpec("idle", idle, restart=Restart.TEMPORARY)
    async with trio.open_nursery() as nursery:
        await _run_tree(nursery, Supervisor([dynamic.child_spec("many")]))
        children = [dynamic.start_child(spec) for _ in range(actors.DEFAULT_CAPACITY * 2)]
        await _settle()
        for child in children:  # all end before the supervisor reads one Down
            actors.send_exit(child, actors.KILLED)
        await _settle()
        assert dynamic.count_children() == 0
        nursery.cancel_scope.cancel()


async def test_a_restart_whose_name_was_taken_counts_against_intensity(
    node: actors.Node,
) -> None:
    dynamic = DynamicSupervisor(intensity=2, period=5)
    spec = ChildSpec("named", crash_on, name="wanted")
    gave_up = pytest.RaisesExc(actors.RestartIntensityExceeded, match="'named'")
    with pytest.RaisesGroup(gave_up, flatten_subgroups=True):
        async with trio.open_nursery() as nursery:
            await _run_tree(nursery, Supervisor([dynamic.child_spec("dyn")], intensity=0))
            dynamic.start_child(spec)
            await _settle()
            actors.unregister("wanted")
            actors.register("wanted", actors.spawn(nursery, idle))  # the name is gone
            actors.send(dynamic.which_children()[0][1], "crash")
            await _settle()
