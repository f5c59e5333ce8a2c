"""Two nodes on one Redis: sends, names, groups and monitors that cross nodes."""

from __future__ import annotations

import pytest
import trio

import actors
from tests.actors.kit import Recorder, idle

from .conftest import backend_of, cluster_node, two_nodes


async def test_send_to_an_address_on_another_node_arrives_in_order(redis_url, prefix):
    async with two_nodes(redis_url, prefix) as (a, b, nursery):
        await backend_of(a).wait_until(lambda: a.backend.is_alive("b"))
        recorder = Recorder()
        address = b.spawn(nursery, recorder)
        assert address.node == "b"
        for i in range(500):
            assert a.send(address, ("n", i))
        assert await recorder.wait_for_count(500) == [("n", i) for i in range(500)]


async def test_send_to_a_name_registered_on_another_node(redis_url, prefix):
    async with two_nodes(redis_url, prefix) as (a, b, nursery):
        recorder = Recorder()
        b.spawn(nursery, recorder, name="greeter")
        address = await a.wait_for("greeter", timeout=5)
        assert address.node == "b"
        a.send("greeter", "hello")
        assert await recorder.wait_for_count(1) == ["hello"]


async def test_a_name_held_on_another_node_raises_name_taken_naming_the_holder(redis_url, prefix):
    async with two_nodes(redis_url, prefix) as (a, b, nursery):
        holder = a.spawn(nursery, idle, name="unique")
        await b.wait_for("unique", timeout=5)
        with pytest.raises(actors.NameTaken) as raised:
            b.spawn(nursery, idle, name="unique")
        assert raised.value.holder == holder


async def test_two_nodes_racing_for_a_name_leave_exactly_one_holder(redis_url, prefix):
    async with two_nodes(redis_url, prefix) as (a, b, nursery):
        first = a.spawn(nursery, idle, name="contested")
        second = b.spawn(nursery, idle, name="contested")  # before a's claim is known to b
        loser_reason = await _first_to_end(a, b, first, second)
        assert isinstance(loser_reason, actors.Crash)
        assert isinstance(loser_reason.exception, actors.NameTaken)
        winner = loser_reason.exception.holder
        await backend_of(a).wait_until(lambda: a.whereis("contested") == winner)
        await backend_of(b).wait_until(lambda: b.whereis("contested") == winner)


async def _first_to_end(
    a: actors.Node, b: actors.Node, first: actors.Address, second: actors.Address
) -> actors.ExitReason:
    reasons: list[actors.ExitReason] = []
    async with trio.open_nursery() as waiting:

        async def wait(node: actors.Node, address: actors.Address) -> None:
            reasons.append(await node.wait(address))
            waiting.cancel_scope.cancel()

        waiting.start_soon(wait, a, first)
        waiting.start_soon(wait, b, second)
    return reasons[0]


async def test_a_name_frees_itself_cluster_wide_when_its_actor_ends(redis_url, prefix):
    async with two_nodes(redis_url, prefix) as (a, b, nursery):
        holder = a.spawn(nursery, idle, name="short-lived")
        await b.wait_for("short-lived", timeout=5)
        a.exit(holder, actors.KILLED)
        await backend_of(b).wait_until(lambda: b.whereis("short-lived") is None)
        b.spawn(nursery, idle, name="short-lived")  # free again


async def test_groups_span_nodes_and_publish_reaches_every_member(redis_url, prefix):
    async with two_nodes(redis_url, prefix) as (a, b, nursery):
        here, there = Recorder(), Recorder()
        a.join("room", a.spawn(nursery, here))
        b.join("room", b.spawn(nursery, there))
        await backend_of(a).wait_until(lambda: len(a.members("room")) == 2)
        await backend_of(b).wait_until(lambda: len(b.members("room")) == 2)
        assert a.publish("room", "to all") == 2
        assert await here.wait_for_count(1) == ["to all"]
        assert await there.wait_for_count(1) == ["to all"]


async def test_monitoring_an_actor_on_another_node_gives_down_with_its_reason(redis_url, prefix):
    async with two_nodes(redis_url, prefix) as (a, b, nursery):
        await backend_of(a).wait_until(lambda: a.backend.is_alive("b"))
        target = b.spawn(nursery, idle)
        watcher = Recorder()
        watching = a.spawn(nursery, watcher)
        ref = a.actor(watching).monitor(target)  # type: ignore[union-attr]
        await backend_of(b).wait_until(lambda: b.remote_monitors.watched(target))
        b.exit(target, actors.SHUTDOWN)
        [down] = await watcher.wait_for_count(1)
        assert down == actors.Down(ref, target, actors.SHUTDOWN)


async def test_monitoring_an_ended_remote_actor_gives_noproc(redis_url, prefix):
    async with two_nodes(redis_url, prefix) as (a, b, nursery):
        await backend_of(a).wait_until(lambda: a.backend.is_alive("b"))
        gone = actors.Address("b", 999_999)
        watcher = Recorder()
        ref = a.actor(a.spawn(nursery, watcher)).monitor(gone)  # type: ignore[union-attr]
        assert await watcher.wait_for_count(1) == [actors.Down(ref, gone, actors.NOPROC)]
        del b


async def test_cluster_lists_live_nodes(redis_url, prefix):
    async with (
        cluster_node(redis_url, prefix, "a") as a,
        cluster_node(redis_url, prefix, "b") as b,
    ):
        await backend_of(a).wait_until(lambda: a.backend.is_alive("b"))
        view = a.cluster()
        assert view.node == "a" and view.connected
        assert [peer.node for peer in view.peers] == ["a", "b"]
        assert all(peer.alive for peer in view.peers)
        del b


async def test_links_span_nodes_both_ways(redis_url, prefix):
    async with two_nodes(redis_url, prefix) as (a, b, nursery):
        await backend_of(a).wait_until(lambda: a.backend.is_alive("b"))
        here, there = Recorder(), Recorder()
        near = a.spawn(nursery, here, trap_exits=True)
        far = b.spawn(nursery, there, trap_exits=True)
        a.actor(near).link(far)  # type: ignore[union-attr]
        a.send(far, "linked")  # after the link, in order: once it is here, so is the link
        assert await there.wait_for_count(1) == ["linked"]
        b.exit(far, actors.KILLED)
        assert await here.wait_for_count(1) == [actors.Exit(far, actors.KILLED)]
        # The other way: an actor of a that ends tells the actor on b linked to it.
        other_recorder = Recorder()
        other = b.spawn(nursery, other_recorder, trap_exits=True)
        doomed = a.spawn(nursery, here)
        b.actor(other).link(doomed)  # type: ignore[union-attr]
        b.send(doomed, "linked")
        assert await here.wait_for_count(2) == [actors.Exit(far, actors.KILLED), "linked"]
        a.exit(doomed, actors.SHUTDOWN)
        assert await other_recorder.wait_for_count(1) == [actors.Exit(doomed, actors.SHUTDOWN)]


async def test_linking_to_an_ended_remote_actor_exits_with_noproc(redis_url, prefix):
    async with two_nodes(redis_url, prefix) as (a, b, nursery):
        await backend_of(a).wait_until(lambda: a.backend.is_alive("b"))
        recorder = Recorder()
        linker = a.spawn(nursery, recorder, trap_exits=True)
        gone = actors.Address("b", 999_999)
        a.actor(linker).link(gone)  # type: ignore[union-attr]
        assert await recorder.wait_for_count(1) == [actors.Exit(gone, actors.NOPROC)]
        del b
