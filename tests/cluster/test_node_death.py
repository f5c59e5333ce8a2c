"""A node killed outright (SIGKILL, no goodbye): the others notice within the lease."""

from __future__ import annotations

import trio

import actors
from tests.actors.kit import Recorder, idle

from .conftest import HEARTBEAT, backend_of, cluster_node, two_nodes
from .node_process import node_in_process

NODE = "tests.cluster.node_process"


async def test_a_killed_node_gives_noconnection_to_monitors_and_links_and_frees_its_names(
    redis_url: str, prefix: str
) -> None:
    async with (
        cluster_node(redis_url, prefix, "watcher") as node,
        trio.open_nursery() as nursery,
        node_in_process(NODE, redis_url, prefix, "doomed") as process,
    ):
        victim = await node.wait_for("victim", timeout=5)
        await backend_of(node).wait_until(lambda: node.members("victims") == [victim])
        watcher = Recorder()
        watching = node.spawn(nursery, watcher)
        ref = node.actor(watching).monitor(victim)  # type: ignore[union-attr]
        linked = Recorder()
        linking = node.spawn(nursery, linked, trap_exits=True)
        node.actor(linking).link(victim)  # type: ignore[union-attr]
        assert node.cluster().peers[1].node == "doomed"
        process.kill()
        [down] = await watcher.wait_for_count(1)
        assert down == actors.Down(ref, victim, actors.NOCONNECTION)
        assert await linked.wait_for_count(1) == [actors.Exit(victim, actors.NOCONNECTION)]
        assert node.whereis("victim") is None
        assert node.members("victims") == []
        assert [peer.node for peer in node.cluster().peers] == ["watcher"]
        # Its names held no lease of their own: the name is free for another node now.
        successor = node.spawn(nursery, idle, name="victim")
        assert await node.wait_for("victim", timeout=5) == successor
        nursery.cancel_scope.cancel()


async def test_a_node_thought_down_and_heard_again_is_whole_in_the_others_view(
    redis_url: str, prefix: str
) -> None:
    """A node whose heartbeats stall past the lease (a loop busy with 20,000 joins) is
    forgotten by the others; once heard again its memberships and names come back."""
    async with two_nodes(redis_url, prefix) as (a, b, nursery):
        member = b.spawn(nursery, idle, name="svc")
        b.join("room", member)
        await a.wait_for("svc", timeout=5)
        await backend_of(a).wait_until(lambda: a.members("room") == [member])
        with trio.fail_after(10):
            backend_of(b).heartbeat = 1.0  # silent for twice the lease
            await backend_of(a).wait_until(lambda: not a.backend.is_alive("b"))
            assert a.members("room") == [] and a.whereis("svc") is None
            backend_of(b).heartbeat = HEARTBEAT
            await backend_of(a).wait_until(
                lambda: a.members("room") == [member] and a.whereis("svc") == member
            )
