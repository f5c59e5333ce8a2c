"""Presence across nodes on a real Redis: replicated, and cleaned up when a node dies or
Redis loses everything."""

from __future__ import annotations

import trio

import actors
from actors import presence
from tests.actors.kit import idle

from .conftest import backend_of, cluster_node, two_nodes
from .node_process import node_in_process
from .presence_kit import SETTINGS, Watcher
from .redis_kit import RedisServer


async def test_a_presence_tracked_on_one_node_is_listed_and_announced_on_the_other(
    redis_url: str, prefix: str
) -> None:
    async with (
        two_nodes(redis_url, prefix) as (a, b, nursery),
        presence.open_presence(SETTINGS, node=a) as on_a,
        presence.open_presence(SETTINGS, node=b) as on_b,
    ):
        watcher = Watcher(on_b, "room")
        b.spawn(nursery, watcher)
        tabs = [a.spawn(nursery, idle) for _ in range(2)]
        for tab in tabs:
            on_a.track("room", "ann", {"node": "a"}, tab)
        on_b.track("room", "ann", {"node": "b"}, b.spawn(nursery, idle))
        await watcher.wait_until(lambda: on_b.table.count_metas("room") == 3)
        assert on_b.table.count("room") == 1  # one user, three tabs on two nodes
        assert sorted(meta.data["node"] for meta in on_b.table.listing("room")["ann"]) == [
            "a",
            "a",
            "b",
        ]
        a.exit(tabs[0], actors.KILLED)
        await watcher.wait_until(lambda: on_b.table.count_metas("room") == 2)
        assert not any("ann" in diff.departed for diff in watcher.diffs)


async def test_a_killed_node_leaves_with_all_its_presences_in_one_diff(
    redis_url: str, prefix: str
) -> None:
    async with (
        cluster_node(redis_url, prefix, "survivor") as node,
        presence.open_presence(SETTINGS, node=node) as tracker,
        trio.open_nursery() as nursery,
    ):
        tracker.track("room", "ann", {"tab": "survivor"}, node.spawn(nursery, idle))
        watcher = Watcher(tracker, "room")
        node.spawn(nursery, watcher)
        async with node_in_process(
            "tests.cluster.presence_process", redis_url, prefix, "doomed", "20"
        ) as process:
            with trio.fail_after(20):
                await watcher.wait_until(lambda: tracker.table.count("room") == 21)
            assert tracker.table.count_metas("room") == 22
            seen = len(watcher.diffs)
            process.kill()
            await watcher.wait_until(lambda: tracker.table.count("room") == 1)
            [gone] = watcher.diffs[seen:]  # one diff for the whole node
            assert sorted(gone.departed) == sorted(f"doomed{n}" for n in range(20))
            assert "ann" not in gone.departed and len(gone.leaves["ann"]) == 1
            assert [meta.data for meta in tracker.table.listing("room")["ann"]] == [
                {"tab": "survivor"}
            ]
            nursery.cancel_scope.cancel()


async def test_after_redis_loses_everything_presence_is_rebuilt_without_ghosts(
    private_redis: RedisServer, prefix: str
) -> None:
    url = private_redis.url
    async with (
        two_nodes(url, prefix) as (a, b, nursery),
        presence.open_presence(SETTINGS, node=a) as on_a,
        presence.open_presence(SETTINGS, node=b) as on_b,
    ):
        watcher, local = Watcher(on_b, "room"), Watcher(on_a, "room")
        b.spawn(nursery, watcher)
        a.spawn(nursery, local)
        leaving = a.spawn(nursery, idle)
        on_a.track("room", "ann", {}, leaving)
        on_a.track("room", "bob", {}, a.spawn(nursery, idle))
        await watcher.wait_until(lambda: watcher.keys() == {"ann", "bob"})

        private_redis.stop()
        await backend_of(a).wait_until(lambda: not a.cluster().connected)
        a.exit(leaving, actors.KILLED)  # its leave cannot reach b now
        on_a.track("room", "cy", {}, a.spawn(nursery, idle))  # nor this join
        await local.wait_until(lambda: local.keys() == {"bob", "cy"})  # a's delta went, lost
        assert watcher.keys() == {"ann", "bob"}

        private_redis.start()
        await watcher.wait_until(lambda: watcher.keys() == {"bob", "cy"})
        assert any("ann" in diff.departed for diff in watcher.diffs)
        assert any("cy" in diff.arrived for diff in watcher.diffs)
