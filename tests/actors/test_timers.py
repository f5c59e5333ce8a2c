"""start_timer, send_after, cancel_timer, read_timer, all on trio's MockClock."""

from __future__ import annotations

import collections
import gc
import weakref

import pytest
import trio
import trio.testing

import actors
from actors import Timeout
from actors.messages import TimerRef
from actors.timers import TIMERS_PER_PASS, TimerService

from .kit import Recorder, raise_crash, run_actor


async def test_start_timer_delivers_timeout_to_the_actor_itself(
    node: actors.Node, autojump_clock: trio.testing.MockClock
) -> None:
    got: list[tuple[float, object]] = []

    async def body(actor: actors.Actor) -> None:
        ref = actors.start_timer(1.5, "Hello!")
        msg = await actor.receive()
        got.append((trio.current_time(), msg))
        assert msg == Timeout(ref, "Hello!")

    start = trio.current_time()
    await run_actor(body)
    assert [(round(at - start, 6), msg.msg) for at, msg in got] == [(1.5, "Hello!")]


async def test_send_after_delivers_the_message_as_is_to_another_actor(
    node: actors.Node, autojump_clock: trio.testing.MockClock
) -> None:
    recorder = Recorder()

    async def sender(actor: actors.Actor) -> None:
        actors.send_after(2, "rec", {"plain": True})
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        actors.spawn(nursery, recorder, name="rec")
        actors.spawn(nursery, sender)
        assert await recorder.wait_for_count(1) == [{"plain": True}]
        nursery.cancel_scope.cancel()


async def test_cancel_timer_returns_time_left_and_nothing_arrives(
    node: actors.Node, autojump_clock: trio.testing.MockClock
) -> None:
    outcome: dict[str, object] = {}

    async def body(actor: actors.Actor) -> None:
        ref = actors.start_timer(10, "never")
        await trio.sleep(4)
        outcome["read"] = actors.read_timer(ref)
        outcome["left"] = actors.cancel_timer(ref)
        outcome["again"] = actors.cancel_timer(ref)
        with trio.move_on_after(60):
            outcome["received"] = await actor.receive()

    await run_actor(body)
    assert outcome == {"read": pytest.approx(6), "left": pytest.approx(6), "again": None}


async def test_cancel_after_fire_but_before_receive_means_never_seen(
    node: actors.Node, autojump_clock: trio.testing.MockClock
) -> None:
    seen: list[object] = []

    async def body(actor: actors.Actor) -> None:
        ref = actors.start_timer(1, "stale")
        await trio.sleep(5)  # the timer fires; its message waits in the mailbox
        assert len(actor.mailbox) == 1
        assert actors.read_timer(ref) is None
        assert actors.cancel_timer(ref) is None
        actor.send(actor.address, "after")
        seen.append(await actor.receive())

    await run_actor(body)
    assert seen == ["after"]


async def test_cancelled_send_after_is_never_seen_by_its_destination(
    node: actors.Node, autojump_clock: trio.testing.MockClock
) -> None:
    recorder = Recorder()
    done = trio.Event()

    async def sender(actor: actors.Actor, dest: actors.Address) -> None:
        ref = actors.send_after(1, dest, "stale")
        await trio.sleep(2)  # delivered, not yet received: the recorder is paused
        assert actors.cancel_timer(ref) is None
        actor.send(dest, "fresh")
        done.set()

    async def paused_recorder(actor: actors.Actor) -> None:
        await done.wait()
        await recorder(actor)

    async with trio.open_nursery() as nursery:
        dest = actors.spawn(nursery, paused_recorder)
        sender_address = actors.spawn(nursery, sender, dest)
        raise_crash(await node.wait(sender_address))
        assert await recorder.wait_for_count(1) == ["fresh"]
        await trio.sleep(10)
        assert recorder.messages == ["fresh"]
        nursery.cancel_scope.cancel()


async def test_timers_die_with_their_actor(
    node: actors.Node, autojump_clock: trio.testing.MockClock
) -> None:
    recorder = Recorder()

    async def short_lived(actor: actors.Actor, dest: actors.Address) -> None:
        actors.send_after(5, dest, "from beyond")
        actors.start_timer(5, "self")

    async with trio.open_nursery() as nursery:
        dest = actors.spawn(nursery, recorder)
        actors.spawn(nursery, short_lived, dest)
        await trio.sleep(1)
        assert node.statistics().timers == 0
        await trio.sleep(10)
        assert recorder.messages == []
        nursery.cancel_scope.cancel()


async def test_timers_fire_in_deadline_order_whatever_the_start_order(
    node: actors.Node, autojump_clock: trio.testing.MockClock
) -> None:
    async def body(actor: actors.Actor) -> None:
        for seconds in (3, 1, 2, 1):
            actors.start_timer(seconds, seconds)
        order = [(await actor.receive()).msg for _ in range(4)]
        assert order == [1, 1, 2, 3]

    await run_actor(body)


async def test_a_negative_or_infinite_delay_is_refused(node: actors.Node) -> None:
    async def body(actor: actors.Actor) -> None:
        for bad in (-1, float("inf"), float("nan")):
            with pytest.raises(ValueError, match="finite number"):
                actors.start_timer(bad, "x")

    await run_actor(body)


async def test_a_cancelled_timer_lets_go_of_its_callback_at_once(node: actors.Node) -> None:
    class Owner:
        def fire(self) -> None:
            raise AssertionError("a cancelled timer fired")

    owner = Owner()
    alive = weakref.ref(owner)
    ref = actors.TimerRef()
    node.timers.schedule(ref, 3600, owner.fire)
    node.timers.cancel(ref)
    del owner
    gc.collect()
    assert alive() is None
    assert len(node.timers) == 0


async def test_churning_timers_do_not_grow_the_heap(node: actors.Node) -> None:
    for _ in range(10_000):
        ref = actors.TimerRef()
        node.timers.schedule(ref, 3600, lambda: None)
        node.timers.cancel(ref)
    assert len(node.timers._heap) <= 128


class _Passes(trio.abc.Instrument):
    """Counts the loop's scheduler passes (one wait for I/O each)."""

    def __init__(self) -> None:
        self.count = 0

    def before_io_wait(self, timeout: float) -> None:
        self.count += 1


async def test_timers_due_together_fire_in_bounded_batches_one_per_pass(
    autojump_clock: trio.testing.MockClock,
) -> None:
    timers = TimerService()
    passes = _Passes()
    fired_in: list[int] = []  # the pass each callback ran in
    due = 3 * TIMERS_PER_PASS + 5
    trio.lowlevel.add_instrument(passes)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(timers.run)
            for _ in range(due):
                timers.schedule(TimerRef(), 30.0, lambda: fired_in.append(passes.count))
            await trio.sleep(31)
            nursery.cancel_scope.cancel()
    finally:
        trio.lowlevel.remove_instrument(passes)
    assert len(fired_in) == due
    per_pass = collections.Counter(fired_in)
    assert max(per_pass.values()) == TIMERS_PER_PASS
    assert len(per_pass) == 4  # four passes, the loop polling I/O between them
