"""Names (register, whereis, wait_for) and process groups (join, publish, automatic leave)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio
import trio.testing

import actors
from actors import MailboxPolicy

from .kit import Recorder, idle


async def test_register_whereis_unregister(node: actors.Node) -> None:
    async with trio.open_nursery() as nursery:
        address = actors.spawn(nursery, idle)
        actors.register("svc", address)
        assert actors.whereis("svc") == address
        actors.unregister("svc")
        assert actors.whereis("svc") is None
        nursery.cancel_scope.cancel()


async def test_name_clash_raises_name_taken_naming_the_holder(node: actors.Node) -> None:
    async with trio.open_nursery() as nursery:
        holder = actors.spawn(nursery, idle, name="room")
        other = actors.spawn(nursery, idle)
        with pytest.raises(actors.NameTaken, match=f"already registered to {holder!r}") as err:
            actors.register("room", other)
        assert err.value.holder == holder
        with pytest.raises(actors.NameTaken):
            actors.spawn(nursery, idle, name="room")
        nursery.cancel_scope.cancel()


async def test_names_are_removed_when_the_actor_ends(node: actors.Node) -> None:
    async with trio.open_nursery() as nursery:
        address = actors.spawn(nursery, idle, name="brief")
        node.exit(address, actors.KILLED)
    assert actors.whereis("brief") is None
    with pytest.raises(actors.NoSuchActor):
        actors.send("brief", "anyone there?")


async def test_wait_for_returns_once_the_name_is_registered(
    node: actors.Node, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        found: list[actors.Address] = []

        async def waiter() -> None:
            found.append(await actors.wait_for("late", timeout=10))

        nursery.start_soon(waiter)
        await trio.sleep(3)
        address = actors.spawn(nursery, idle, name="late")
        await trio.testing.wait_all_tasks_blocked()
        assert found == [address]
        nursery.cancel_scope.cancel()


async def test_wait_for_gives_up_with_no_such_actor_after_the_timeout(
    node: actors.Node, autojump_clock: trio.testing.MockClock
) -> None:
    start = trio.current_time()
    with pytest.raises(actors.NoSuchActor, match="no actor was registered as 'never' within 2 s"):
        await actors.wait_for("never", timeout=2)
    assert trio.current_time() - start == pytest.approx(2)


@pytest.mark.parametrize(
    ("operation", "refusal"),
    [
        (lambda address: actors.register("ghost", address), "cannot register the name 'ghost'"),
        (lambda address: actors.join("room", address), "cannot join the group 'room'"),
    ],
    ids=["register", "join"],
)
async def test_register_and_join_refuse_an_ended_actor_saying_so(
    node: actors.Node, operation: Callable[[actors.Address], None], refusal: str
) -> None:
    async with trio.open_nursery() as nursery:
        address = actors.spawn(nursery, idle)
        node.exit(address, actors.KILLED)
    with pytest.raises(actors.NoSuchActor) as refused:
        operation(address)
    assert str(refused.value) == f"{refusal} for {address}: that actor has ended"
    assert (refused.value.address, refused.value.name) == (address, None)
    assert actors.members("room") == [] and actors.whereis("ghost") is None


async def test_join_refuses_an_actor_of_a_node_that_is_down_saying_so(node: actors.Node) -> None:
    elsewhere = actors.Address("gone", 7)  # no such node in this cluster of one
    with pytest.raises(actors.NoSuchActor) as refused:
        actors.join("room", elsewhere)
    assert (
        str(refused.value)
        == f"cannot join the group 'room' for {elsewhere}: its node 'gone' is down"
    )


async def test_sending_to_an_unknown_name_says_to_register_it(node: actors.Node) -> None:
    with pytest.raises(actors.NoSuchActor) as refused:
        actors.send("nobody", "hello")
    assert str(refused.value) == (
        "no actor is registered as 'nobody'; register it first, or send to its address"
    )
    assert refused.value.name == "nobody"


async def test_join_leave_members_which_groups(node: actors.Node) -> None:
    async with trio.open_nursery() as nursery:
        a, b = actors.spawn(nursery, idle), actors.spawn(nursery, idle)
        actors.join("g", a)
        actors.join("g", b)
        actors.join("g", a)
        actors.join("h", b)
        assert actors.members("g") == [a, b]
        assert sorted(actors.which_groups()) == ["g", "h"]
        actors.leave("g", a)
        assert actors.members("g") == [b]
        actors.leave("h", b)
        assert actors.which_groups() == ["g"]
        nursery.cancel_scope.cancel()


async def test_members_leave_their_groups_when_they_end(node: actors.Node) -> None:
    async with trio.open_nursery() as nursery:
        a, b = actors.spawn(nursery, idle), actors.spawn(nursery, idle)
        actors.join("g", a)
        actors.join("g", b)
        node.exit(a, actors.KILLED)
        assert await node.wait(a) == actors.KILLED
        assert actors.members("g") == [b]
        nursery.cancel_scope.cancel()


async def test_publish_reaches_every_member_and_returns_how_many_took_it(
    node: actors.Node,
) -> None:
    recorders = [Recorder() for _ in range(3)]
    async with trio.open_nursery() as nursery:
        for recorder in recorders:
            actors.join("news", actors.spawn(nursery, recorder))
        assert actors.publish("news", "extra!") == 3
        for recorder in recorders:
            assert await recorder.wait_for_count(1) == ["extra!"]
        assert actors.publish("nobody-here", "x") == 0
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    "policy", [MailboxPolicy.DROP_NEWEST, MailboxPolicy.FAIL, MailboxPolicy.EXIT]
)
async def test_a_full_member_never_blocks_the_publisher_or_the_others(
    node: actors.Node, policy: MailboxPolicy
) -> None:
    recorders = [Recorder() for _ in range(2)]
    async with trio.open_nursery() as nursery:
        stuck = actors.spawn(nursery, idle, capacity=1, overflow=policy)
        actors.send(stuck, "fills it")
        actors.join("room", stuck)
        stuck_actor = node.actor(stuck)
        assert stuck_actor is not None
        for recorder in recorders:
            actors.join("room", actors.spawn(nursery, recorder))
        with trio.testing.assert_no_checkpoints():
            taken = actors.publish("room", "hello")
        assert taken == 2
        for recorder in recorders:
            assert await recorder.wait_for_count(1) == ["hello"]
        if policy is MailboxPolicy.EXIT:
            assert await stuck_actor.wait() == actors.MAILBOX_OVERFLOW
        else:
            assert stuck_actor.mailbox.statistics().dropped == 1
        nursery.cancel_scope.cancel()


def test_group_members_are_indexed_by_node_in_join_order() -> None:
    """A node's broadcast reads its own members and a count per node, never every member of
    the cluster: with 100,000 members over 5 nodes a scan would cost each publish 100,000 steps."""
    from actors.address import Address
    from actors.backend import LocalBackend

    view = LocalBackend()
    a1, b1, a2, b2 = (Address(node, n) for node, n in (("a", 1), ("b", 1), ("a", 2), ("b", 2)))
    for address in (a1, b1, a2, b2):
        view.join("room", address)
    assert view.members_on("room", "a") == [a1, a2]
    assert view.members_on("room", "c") == []
    assert view.member_nodes("room") == {"a": 2, "b": 2}
    view.leave("room", b1)
    view.forget(b2)
    assert view.member_nodes("room") == {"a": 2}
    view.leave("room", a1)
    view.leave("room", a2)
    assert view.member_nodes("room") == {} and view.which_groups() == []
