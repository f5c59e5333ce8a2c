"""The presence tracker on one node: track, list, count, diffs per interval (virtual time)."""

from __future__ import annotations

import pytest
import trio

import actors
from actors import presence
from actors.presence import PresenceDiff, PresenceSettings

from .kit import Recorder, idle

INTERVAL = 0.25


async def start(nursery: trio.Nursery, node: actors.Node, count: int) -> list[actors.Address]:
    return [node.spawn(nursery, idle) for _ in range(count)]


async def test_a_subscriber_gets_one_diff_per_interval_however_many_joined(
    node: actors.Node, autojump_clock: trio.testing.MockClock
) -> None:
    async with (
        presence.open_presence(PresenceSettings(interval=INTERVAL)),
        trio.open_nursery() as n,
    ):
        watcher = Recorder()
        assert presence.subscribe("room", address=node.spawn(n, watcher)) == {}
        start_time = trio.current_time()
        for index, address in enumerate(await start(n, node, 50)):
            presence.track("room", f"user{index}", {"n": index}, address=address)
        assert presence.count("room") == 50  # at once, before any diff
        [diff] = await watcher.wait_for_count(1)
        assert trio.current_time() - start_time == pytest.approx(INTERVAL)
        assert isinstance(diff, PresenceDiff) and len(diff.arrived) == 50 and len(diff) == 50
        await trio.sleep(10 * INTERVAL)
        assert len(watcher.messages) == 1  # nothing changed since: no diff
        n.cancel_scope.cancel()


async def test_a_user_with_three_tabs_is_one_presence_and_one_tab_closing_is_not_a_leave(
    node: actors.Node, autojump_clock: trio.testing.MockClock
) -> None:
    async with (
        presence.open_presence(PresenceSettings(interval=INTERVAL)),
        trio.open_nursery() as n,
    ):
        tabs = await start(n, node, 3)
        for tab, device in zip(tabs, ("phone", "laptop", "tablet"), strict=True):
            presence.track("room", "ann", {"device": device}, address=tab)
        watcher = Recorder()
        assert presence.subscribe("room", address=node.spawn(n, watcher)) == {}
        [first] = await watcher.wait_for_count(1)
        assert first.arrived == ("ann",) and len(first.joins["ann"]) == 3
        listed = presence.list("room")
        assert [meta.data["device"] for meta in listed["ann"]] == ["phone", "laptop", "tablet"]
        assert presence.count("room") == 1
        node.exit(tabs[0], actors.KILLED)
        [_, closed] = await watcher.wait_for_count(2)
        assert closed.departed == () and [m.data for m in closed.leaves["ann"]] == [
            {"device": "phone"}
        ]
        assert presence.count("room") == 1
        for tab in tabs[1:]:
            node.exit(tab, actors.KILLED)
        [_, _, gone] = await watcher.wait_for_count(3)
        assert gone.departed == ("ann",) and presence.list("room") == {}
        n.cancel_scope.cancel()


async def test_an_actor_that_ends_leaves_at_once(
    node: actors.Node, autojump_clock: trio.testing.MockClock
) -> None:
    async with presence.open_presence() as tracker, trio.open_nursery() as n:
        [address] = await start(n, node, 1)
        presence.track("room", "ann", address=address)
        node.exit(address, actors.KILLED)
        await trio.testing.wait_all_tasks_blocked()
        assert presence.list("room") == {} and tracker.statistics().presences == 0
        n.cancel_scope.cancel()


async def test_update_is_a_leave_and_a_join_of_the_same_key(
    node: actors.Node, autojump_clock: trio.testing.MockClock
) -> None:
    async with (
        presence.open_presence(PresenceSettings(interval=INTERVAL)),
        trio.open_nursery() as n,
    ):
        [address] = await start(n, node, 1)
        presence.track("room", "ann", {"typing": False}, address=address)
        watcher = Recorder()
        presence.subscribe("room", address=node.spawn(n, watcher))
        await watcher.wait_for_count(1)
        presence.update("room", {"typing": True}, address=address)
        [_, diff] = await watcher.wait_for_count(2)
        assert diff.arrived == () and diff.departed == ()
        assert [m.data for m in diff.joins["ann"]] == [{"typing": True}]
        assert [m.data for m in diff.leaves["ann"]] == [{"typing": False}]
        assert presence.untrack("room", address=address) == 1
        assert presence.count("room") == 0
        n.cancel_scope.cancel()


async def test_a_subscriber_that_ends_is_forgotten(
    node: actors.Node, autojump_clock: trio.testing.MockClock
) -> None:
    async with presence.open_presence(PresenceSettings(interval=INTERVAL)) as tracker:
        async with trio.open_nursery() as n:
            watcher = node.spawn(n, idle)
            presence.subscribe("room", address=watcher)
            node.exit(watcher, actors.KILLED)
            [address] = await start(n, node, 1)
            presence.track("room", "ann", address=address)
            await trio.sleep(2 * INTERVAL)
            assert tracker.statistics().diffs == 0
            n.cancel_scope.cancel()


async def test_metadata_must_be_able_to_travel(node: actors.Node) -> None:
    async with presence.open_presence(), trio.open_nursery() as n:
        [address] = await start(n, node, 1)
        with pytest.raises(actors.NotPortable):
            presence.track("room", "ann", {"socket": object()}, address=address)
        with pytest.raises(ValueError, match="live actor of this node"):
            presence.track("room", "ann", address=actors.Address("elsewhere", 1, None))
        n.cancel_scope.cancel()


async def test_without_a_tracker_the_error_says_how_to_start_one(node: actors.Node) -> None:
    with pytest.raises(presence.PresenceNotRunning, match="child_spec"):
        presence.count("room")
