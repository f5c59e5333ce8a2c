"""Monitors (Down, noproc, demonitor) and links (crash propagation, trapped exits)."""

from __future__ import annotations

import trio
import trio.testing

import actors
from actors import NOPROC, NORMAL, Crash, Down, Exit, Timeout

from .kit import Recorder, crash_on, idle, raise_crash, run_actor


async def test_monitor_delivers_down_with_the_reason_when_the_target_ends(
    node: actors.Node,
) -> None:
    async def watcher(actor: actors.Actor, target: actors.Address) -> None:
        ref = actor.monitor(target)
        actor.send(target, "boom")
        down = await actor.receive()
        assert isinstance(down, Down) and down.ref is ref and down.address == target
        assert isinstance(down.reason, Crash) and "asked to crash: boom" in str(down.reason)

    async with trio.open_nursery() as nursery:
        target = actors.spawn(nursery, crash_on)
        await run_actor(watcher, target)


async def test_monitoring_an_ended_actor_delivers_down_noproc_at_once(node: actors.Node) -> None:
    async with trio.open_nursery() as nursery:
        gone = actors.spawn(nursery, idle)
        node.exit(gone, actors.KILLED)

    async def watcher(actor: actors.Actor) -> None:
        ref = actor.monitor(gone)
        assert actor.receive_nowait() == Down(ref, gone, NOPROC)

    await run_actor(watcher)


async def test_demonitor_removes_a_down_already_queued(node: actors.Node) -> None:
    async def watcher(actor: actors.Actor, target: actors.Address) -> None:
        ref = actor.monitor(target)
        node.exit(target, actors.KILLED)
        await node.wait(target)
        assert len(actor.mailbox) == 1  # the Down is queued
        actor.demonitor(ref)
        actor.send(actor.address, "next")
        assert await actor.receive() == "next"

    async with trio.open_nursery() as nursery:
        target = actors.spawn(nursery, idle)
        await run_actor(watcher, target)


async def test_a_linked_crash_stops_the_other_actor_too(node: actors.Node) -> None:
    async with trio.open_nursery() as nursery:
        crasher = actors.spawn(nursery, crash_on)
        partner = actors.spawn(nursery, idle)
        node.actor(partner).link(crasher)  # type: ignore[union-attr]
        actors.send(crasher, "now")
        reason = await node.wait(partner)
    assert isinstance(reason, Crash)


async def test_a_normal_exit_does_not_stop_linked_actors(node: actors.Node) -> None:
    async def brief(actor: actors.Actor) -> None:
        await actor.receive()

    async with trio.open_nursery() as nursery:
        quitter = actors.spawn(nursery, brief)
        partner = actors.spawn(nursery, idle)
        node.actor(partner).link(quitter)  # type: ignore[union-attr]
        actors.send(quitter, "bye")
        assert await node.wait(quitter) == NORMAL
        await trio.testing.wait_all_tasks_blocked()
        assert node.actor(partner) is not None
        nursery.cancel_scope.cancel()


async def test_an_actor_trapping_exits_gets_exit_messages_instead(node: actors.Node) -> None:
    async def trapper(actor: actors.Actor, crasher: actors.Address) -> None:
        actor.trap_exits = True
        actor.link(crasher)
        actor.send(crasher, "now")
        msg = await actor.receive()
        assert isinstance(msg, Exit) and msg.address == crasher
        assert isinstance(msg.reason, Crash)

    async with trio.open_nursery() as nursery:
        crasher = actors.spawn(nursery, crash_on)
        assert await run_actor(trapper, crasher) == NORMAL


async def test_linking_to_an_ended_actor_is_noproc(node: actors.Node) -> None:
    async with trio.open_nursery() as nursery:
        gone = actors.spawn(nursery, idle)
        node.exit(gone, actors.KILLED)

    async def trapper(actor: actors.Actor) -> None:
        actor.trap_exits = True
        actor.link(gone)
        assert actor.receive_nowait() == Exit(gone, NOPROC)

    await run_actor(trapper)


async def test_spawn_link_ties_a_child_to_its_parent(node: actors.Node) -> None:
    recorder = Recorder()

    async def parent(actor: actors.Actor, nursery: trio.Nursery) -> None:
        actor.trap_exits = True
        child = actors.spawn(nursery, crash_on, link=True)
        actors.send(child, "x")
        recorder.messages.append(await actor.receive())

    async with trio.open_nursery() as nursery:
        await run_actor(parent, nursery)
    (msg,) = recorder.messages
    assert isinstance(msg, Exit) and isinstance(msg.reason, Crash)


async def test_exit_signal_shutdown_stops_a_non_trapping_actor(node: actors.Node) -> None:
    async with trio.open_nursery() as nursery:
        target = actors.spawn(nursery, idle)
        actors.send_exit(target, actors.SHUTDOWN)
        assert await node.wait(target) == actors.SHUTDOWN


async def test_an_actor_can_stop_itself_with_a_reason(node: actors.Node) -> None:
    async def quits(actor: actors.Actor) -> None:
        actor.exit(actors.SHUTDOWN)

    assert await run_actor(quits) == actors.SHUTDOWN


async def test_runtime_notifications_reach_a_full_mailbox(
    node: actors.Node, autojump_clock: trio.testing.MockClock
) -> None:
    gate = trio.Event()

    async def swamped(actor: actors.Actor, target: actors.Address) -> None:
        actor.trap_exits = True
        ref = actor.monitor(target)
        timer = actor.start_timer(1, "tick")
        await gate.wait()
        got = [actor.receive_nowait() for _ in range(5)]
        assert len(actor.mailbox) == 0
        assert [msg for msg in got if isinstance(msg, str)] == ["fill 0", "fill 1"]
        assert Timeout(timer, "tick") in got
        assert Down(ref, target, actors.KILLED) in got
        assert Exit(None, actors.SHUTDOWN) in got

    async with trio.open_nursery() as nursery:
        target = actors.spawn(nursery, idle)
        watcher = actors.spawn(nursery, swamped, target, capacity=2)
        await trio.testing.wait_all_tasks_blocked()
        assert [actors.send(watcher, f"fill {i}") for i in range(3)] == [True, True, False]
        await trio.sleep(2)  # the timer fires into the full mailbox
        node.exit(target, actors.KILLED)
        node.exit(watcher, actors.SHUTDOWN)
        await node.wait(target)
        gate.set()
        raise_crash(await node.wait(watcher))


async def test_a_monitor_is_forgotten_once_its_down_is_sent(node: actors.Node) -> None:
    async def watcher(actor: actors.Actor, target: actors.Address) -> None:
        actor.monitor(target)
        node.exit(target, actors.KILLED)
        assert isinstance(await actor.receive(), Down)
        assert actor._watching == {}

    async with trio.open_nursery() as nursery:
        target = actors.spawn(nursery, idle)
        await run_actor(watcher, target)
