"""The in-process topic engine: posts reach subscribers in order, resume is exact, limits hold."""

from __future__ import annotations

from typing import Any

import trio

import actors
from actors import topics
from actors.topics import (
    Lagged,
    LocalTopics,
    Lost,
    Position,
    Post,
    Retention,
    Subscribed,
    Unrecoverable,
)

from .kit import Recorder


async def subscriber(
    nursery: trio.Nursery, topic: str, after: Position | None = None, **options: Any
) -> Recorder:
    """An actor subscribed to ``topic`` that records what it gets."""
    recorder = Recorder()

    async def body(actor: actors.Actor) -> None:
        topics.subscribe(topic, after)
        await recorder(actor)

    actors.spawn(nursery, body, **options)
    await trio.testing.wait_all_tasks_blocked()
    return recorder


def posts_in(messages: list[Any]) -> list[str | bytes]:
    return [message.data for message in messages if isinstance(message, Post)]


async def test_a_post_gets_the_next_position_and_reaches_subscribers(node: actors.Node) -> None:
    async with trio.open_nursery() as nursery:
        recorder = await subscriber(nursery, "news")
        first = await topics.post("news", "a")
        second = await topics.post("news", b"b")
        assert second == Position(first.epoch, first.offset + 1)
        messages = await recorder.wait_for_count(3)
        assert messages[0] == Subscribed("news", Position(first.epoch, 0))
        assert messages[1:] == [Post("news", first, "a"), Post("news", second, b"b")]
        nursery.cancel_scope.cancel()


async def test_resume_gets_exactly_what_followed_then_live(node: actors.Node) -> None:
    positions = [await topics.post("news", f"m{n}") for n in range(1, 11)]
    async with trio.open_nursery() as nursery:
        recorder = await subscriber(nursery, "news", positions[3])
        await topics.post("news", "m11")
        messages = await recorder.wait_for_count(8)
        assert messages[0] == Subscribed("news", positions[3])
        assert posts_in(messages) == [f"m{n}" for n in range(5, 12)]
        nursery.cancel_scope.cancel()


async def test_a_subscriber_that_never_received_anything_resumes_from_subscribed(
    node: actors.Node,
) -> None:
    async with trio.open_nursery() as nursery:
        first = await subscriber(nursery, "news")
        await first.wait_for_count(1)
        where = first.messages[0].position
        await topics.post("news", "while away")
        again = await subscriber(nursery, "news", where)
        assert posts_in(await again.wait_for_count(2)) == ["while away"]
        nursery.cancel_scope.cancel()


async def test_unrecoverable_positions_say_why_and_give_what_remains(node: actors.Node) -> None:
    engine = LocalTopics(Retention(count=3))
    async with topics.serving(engine), trio.open_nursery() as nursery:
        for n in range(1, 6):
            await topics.post("news", f"m{n}")
        epoch = engine.epoch
        cases = {
            Lost.TRIMMED: Position(epoch, 1),
            Lost.FUTURE: Position(epoch, 9),
            Lost.EPOCH: Position("a restart ago", 5),
        }
        for why, asked in cases.items():
            recorder = await subscriber(nursery, "news", asked)
            answer, *rest = await recorder.wait_for_count(4)
            assert answer == Unrecoverable(
                "news", asked, why, Position(epoch, 2), Position(epoch, 5)
            )
            assert posts_in(rest) == ["m3", "m4", "m5"]
        nursery.cancel_scope.cancel()


async def test_history_ages_out_on_virtual_time(node: actors.Node, autojump_clock: Any) -> None:
    engine = LocalTopics(Retention(age=60.0))
    async with topics.serving(engine):
        old = await topics.post("news", "old")
        await trio.sleep(61)
        snapshot = await engine.snapshot("news")
        assert snapshot.posts == () and snapshot.top == old.offset


async def test_each_engine_has_its_own_epoch() -> None:
    assert LocalTopics().epoch != LocalTopics().epoch


async def test_a_post_from_inside_a_delivery_keeps_every_subscriber_in_order(
    node: actors.Node,
) -> None:
    """The first subscriber posts as it takes a post; the second must still see 1 then 2."""
    got: list[int] = []
    async with trio.open_nursery() as nursery:

        async def body(actor: actors.Actor) -> None:
            engine = topics.engine()
            assert isinstance(engine, LocalTopics)

            def echo(event: Any) -> bool:
                if isinstance(event, Post) and event.data == "1":
                    engine.post_now("t", "2")
                return True

            topics.subscribe("t", deliver=echo)
            await trio.sleep_forever()

        actors.spawn(nursery, body)
        await trio.testing.wait_all_tasks_blocked()
        second = await subscriber(nursery, "t")
        await topics.post("t", "1")
        got = [
            post.position.offset
            for post in await second.wait_for_count(3)
            if isinstance(post, Post)
        ]
        assert got == [1, 2]
        nursery.cancel_scope.cancel()


async def test_a_subscriber_whose_mailbox_is_full_is_told_it_lagged(node: actors.Node) -> None:
    async with trio.open_nursery() as nursery:
        stalled = trio.Event()
        seen: list[Any] = []

        async def slow(actor: actors.Actor) -> None:
            topics.subscribe("t")
            await stalled.wait()
            async for message in actor:
                seen.append(message)

        actors.spawn(nursery, slow, capacity=2, overflow=actors.MailboxPolicy.FAIL)
        await trio.testing.wait_all_tasks_blocked()
        positions = [await topics.post("t", str(n)) for n in range(1, 4)]
        stalled.set()
        await trio.testing.wait_all_tasks_blocked()
        assert posts_in(seen) == ["1"]
        assert seen[-1] == Lagged("t", positions[0])
        nursery.cancel_scope.cancel()


async def test_ended_subscribers_are_forgotten(node: actors.Node) -> None:
    engine = LocalTopics()
    async with topics.serving(engine), trio.open_nursery() as nursery:
        done = trio.Event()

        async def brief(actor: actors.Actor) -> None:
            topics.subscribe("t")
            await done.wait()

        actors.spawn(nursery, brief)
        await trio.testing.wait_all_tasks_blocked()
        done.set()
        await trio.testing.wait_all_tasks_blocked()
        assert await topics.post("t", "x") == Position(engine.epoch, 1)
        assert engine.subscribers("t") == 0
