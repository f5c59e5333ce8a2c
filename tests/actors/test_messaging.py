"""send, send_wait, overflow policies, dead letters, statistics."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import actors
from actors import MAILBOX_OVERFLOW, MailboxPolicy

from .kit import Recorder, idle, run_actor


async def test_send_by_address_and_by_name_reaches_the_mailbox(node: actors.Node) -> None:
    recorder = Recorder()
    async with trio.open_nursery() as nursery:
        address = actors.spawn(nursery, recorder, name="rec")
        assert actors.send(address, "by address") is True
        assert actors.send("rec", "by name") is True
        assert await recorder.wait_for_count(2) == ["by address", "by name"]
        nursery.cancel_scope.cancel()


async def test_self_address_is_the_actors_own(node: actors.Node) -> None:
    seen: list[actors.Address] = []

    async def body(actor: actors.Actor) -> None:
        seen.append(actors.self_address())

    await run_actor(body)
    (address,) = seen
    assert (
        repr(address)
        == f"<actor test.{address.serial} 'test_self_address_is_the_actors_own.<locals>.body'>"
    )


async def test_send_to_an_ended_address_is_a_counted_no_op(node: actors.Node) -> None:
    async def body(actor: actors.Actor) -> None:
        return

    async with trio.open_nursery() as nursery:
        address = actors.spawn(nursery, body)
    assert actors.send(address, "late") is False
    assert node.statistics().dead_letters == 1


async def test_send_to_an_unknown_name_raises_no_such_actor(node: actors.Node) -> None:
    with pytest.raises(actors.NoSuchActor, match="'nobody'"):
        actors.send("nobody", "hello")


async def test_drop_newest_discards_the_incoming_message_and_counts_it(node: actors.Node) -> None:
    async with trio.open_nursery() as nursery:
        address = actors.spawn(nursery, idle, capacity=2, overflow=MailboxPolicy.DROP_NEWEST)
        assert [actors.send(address, i) for i in range(4)] == [True, True, False, False]
        actor = node.actor(address)
        assert actor is not None
        stats = actor.mailbox.statistics()
        assert (stats.length, stats.received, stats.dropped) == (2, 2, 2)
        assert [actor.receive_nowait(), actor.receive_nowait()] == [0, 1]
        nursery.cancel_scope.cancel()


async def test_drop_oldest_keeps_the_newest_messages(node: actors.Node) -> None:
    async with trio.open_nursery() as nursery:
        address = actors.spawn(nursery, idle, capacity=2, overflow=MailboxPolicy.DROP_OLDEST)
        assert all(actors.send(address, i) for i in range(5))
        actor = node.actor(address)
        assert actor is not None
        assert actor.mailbox.statistics().dropped == 3
        assert actor.mailbox.statistics().received == 5  # each was taken, three later evicted
        assert [actor.receive_nowait(), actor.receive_nowait()] == [3, 4]
        nursery.cancel_scope.cancel()


async def test_fail_policy_raises_mailbox_full_to_the_sender(node: actors.Node) -> None:
    async with trio.open_nursery() as nursery:
        address = actors.spawn(nursery, idle, capacity=1, overflow=MailboxPolicy.FAIL)
        actors.send(address, "fits")
        with pytest.raises(actors.MailboxFull, match="send_wait"):
            actors.send(address, "does not fit")
        nursery.cancel_scope.cancel()


async def test_exit_policy_stops_the_actor_with_mailbox_overflow(node: actors.Node) -> None:
    async with trio.open_nursery() as nursery:
        address = actors.spawn(nursery, idle, capacity=1, overflow=MailboxPolicy.EXIT)
        actors.send(address, "fits")
        assert actors.send(address, "overflows") is False
        assert await node.wait(address) == MAILBOX_OVERFLOW


async def test_send_wait_waits_for_room_then_delivers(node: actors.Node) -> None:
    gate = trio.Event()
    received: list[int] = []

    async def slow(actor: actors.Actor) -> None:
        await gate.wait()
        for _ in range(3):
            received.append(await actor.receive())

    async with trio.open_nursery() as nursery:
        address = actors.spawn(nursery, slow, capacity=1)
        actors.send(address, 1)
        delivered = []

        async def producer() -> None:
            for i in (2, 3):
                delivered.append(await actors.send_wait(address, i))

        nursery.start_soon(producer)
        await trio.testing.wait_all_tasks_blocked()
        assert delivered == []  # blocked: the mailbox is full
        gate.set()
    assert received == [1, 2, 3]
    assert delivered == [True, True]


async def test_mailbox_capacity_must_be_positive(node: actors.Node) -> None:
    async with trio.open_nursery() as nursery:
        with pytest.raises(ValueError, match="capacity"):
            actors.spawn(nursery, idle, capacity=0)


async def test_introspection_lists_live_actors_with_mailbox_figures(node: actors.Node) -> None:
    async with trio.open_nursery() as nursery:
        address = actors.spawn(
            nursery, idle, name="sleepy", capacity=3, overflow=MailboxPolicy.DROP_NEWEST
        )
        for i in range(5):
            actors.send(address, i)
        (info,) = [info for info in node.actors() if info.address == address]
        assert info.names == ("sleepy",)
        assert info.kind == "idle"
        assert (info.mailbox_length, info.capacity, info.received, info.dropped) == (3, 3, 3, 2)
        assert info.started_at > 0
        nursery.cancel_scope.cancel()
    assert all(info.address != address for info in node.actors())


async def test_a_census_counts_every_mailbox_and_describes_only_the_deepest_and_dropping(
    node: actors.Node,
) -> None:
    async with trio.open_nursery() as nursery:
        quiet = [actors.spawn(nursery, idle) for _ in range(3)]
        two, five = actors.spawn(nursery, idle), actors.spawn(nursery, idle, name="five")
        full = actors.spawn(nursery, idle, capacity=1, overflow=MailboxPolicy.DROP_NEWEST)
        for address, count in ((two, 2), (five, 5), (full, 3)):
            for i in range(count):
                actors.send(address, i)
        census = node.census(deepest=2)
        assert census.total == 6
        assert census.kinds == {"idle": 6}
        assert sorted(census.depths) == [0, 0, 0, 1, 2, 5]
        assert [(i.address, i.names, i.mailbox_length) for i in census.deepest] == [
            (five, ("five",), 5),
            (two, (), 2),
        ]
        assert [(i.address, i.dropped) for i in census.with_drops] == [(full, 2)]
        # Asked for more rows than there are waiting mailboxes: empty ones fill up.
        rows = node.census(deepest=5).deepest
        assert [i.mailbox_length for i in rows] == [5, 2, 1, 0, 0]
        assert {i.address for i in rows[3:]} < set(quiet)
        assert node.census().deepest == []
        nursery.cancel_scope.cancel()


async def test_outside_a_node_sending_says_how_to_start_one() -> None:
    with pytest.raises(actors.NoNode, match="open_node"):
        actors.send("anyone", "hi")


async def test_outside_an_actor_timers_say_they_need_one(node: actors.Node) -> None:
    with pytest.raises(actors.NotInActor):
        actors.start_timer(1, "x")


async def test_drop_oldest_never_evicts_a_runtime_notification(node: actors.Node) -> None:
    async with trio.open_nursery() as nursery:
        address = actors.spawn(nursery, idle, capacity=2, overflow=MailboxPolicy.DROP_OLDEST)
        actor = node.actor(address)
        assert actor is not None
        actor.trap_exits = True
        node.exit(address, actors.SHUTDOWN)  # queued in the channel: there was room
        assert all(actors.send(address, i) for i in range(5))
        received = [actor.receive_nowait() for _ in range(3)]
        assert received == [actors.Exit(None, actors.SHUTDOWN), 3, 4]
        assert actor.mailbox.statistics().dropped == 3
        nursery.cancel_scope.cancel()
