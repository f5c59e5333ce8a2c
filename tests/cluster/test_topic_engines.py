"""Both topic engines against one contract, and what only Redis promises (history that
outlives a node, a new epoch when Redis loses its data)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

import actors
from actors import topics
from actors.topics import (
    LocalTopics,
    Lost,
    Position,
    Post,
    Retention,
    Subscribed,
    TopicEngine,
    TopicEvent,
    Unrecoverable,
)
from actors.topics_redis import RedisTopics

from .redis_kit import RedisServer

EngineFactory = Callable[[Retention], TopicEngine]


class Follower:
    """An actor's view of one subscription: every event, and checks on their order."""

    def __init__(self) -> None:
        self.events: list[TopicEvent] = []
        self._changed = trio.Event()

    async def __call__(self, actor: actors.Actor, topic: str, after: Position | None) -> None:
        topics.subscribe(topic, after)
        async for event in actor:
            self.events.append(event)
            self._changed.set()
            self._changed = trio.Event()

    @property
    def posts(self) -> list[Post]:
        return [event for event in self.events if isinstance(event, Post)]

    async def until(self, done: Callable[[Follower], bool]) -> None:
        with trio.fail_after(10):
            while not done(self):
                await self._changed.wait()

    async def until_offset(self, offset: int) -> None:
        await self.until(lambda f: bool(f.posts) and f.posts[-1].position.offset >= offset)

    def offsets(self) -> list[int]:
        return [post.position.offset for post in self.posts]


def follow(nursery: trio.Nursery, topic: str, after: Position | None = None) -> Follower:
    follower = Follower()
    actors.spawn(nursery, follower, topic, after, capacity=100_000)
    return follower


@pytest.fixture(params=["local", "redis"])
def make_engine(request: pytest.FixtureRequest, prefix: str) -> EngineFactory:
    if request.param == "local":
        return lambda retention: LocalTopics(retention)
    url = request.getfixturevalue("redis_url")
    return lambda retention: RedisTopics(url, prefix=prefix, retention=retention)


@asynccontextmanager
async def running(engine: TopicEngine) -> AsyncIterator[trio.Nursery]:
    async with (
        actors.open_node("t"),
        topics.serving(engine),
        trio.open_nursery() as nursery,
    ):
        yield nursery
        nursery.cancel_scope.cancel()


async def test_subscribing_while_posts_flow_gives_each_once_in_order(
    make_engine: EngineFactory,
) -> None:
    """Subscribers join from earlier positions while a poster keeps posting: replay and live
    meet exactly, whatever arrived live while the history was read."""
    async with running(make_engine(Retention(count=2000))) as nursery:
        positions = [await topics.post("t", f"m{n}") for n in range(1, 51)]
        done = trio.Event()

        async def poster() -> None:
            for n in range(51, 501):
                await topics.post("t", f"m{n}")
                await trio.lowlevel.checkpoint()
            done.set()

        nursery.start_soon(poster)
        followers = []
        for n in range(10):
            followers.append(follow(nursery, "t", positions[n * 5]))
            await trio.sleep(0.002)
        await done.wait()
        for follower in followers:
            await follower.until_offset(500)
            start = follower.events[0]
            assert isinstance(start, Subscribed)
            first = start.position.offset + 1
            assert follower.offsets() == list(range(first, 501))
            assert [post.data for post in follower.posts] == [f"m{n}" for n in range(first, 501)]


async def test_positions_that_cannot_be_honoured_are_unrecoverable(
    make_engine: EngineFactory,
) -> None:
    async with running(make_engine(Retention(count=3))) as nursery:
        last = Position("", 0)
        for n in range(1, 6):
            last = await topics.post("t", f"m{n}")
        epoch = last.epoch
        for why, asked in {
            Lost.TRIMMED: Position(epoch, 1),
            Lost.FUTURE: Position(epoch, 6),
            Lost.EPOCH: Position("another", 4),
        }.items():
            follower = follow(nursery, "t", asked)
            await follower.until_offset(5)
            assert follower.events[0] == Unrecoverable(
                "t", asked, why, Position(epoch, 2), Position(epoch, 5)
            )
            assert follower.offsets() == [3, 4, 5]


async def test_a_subscriber_that_got_nothing_resumes_from_its_subscribed_position(
    make_engine: EngineFactory,
) -> None:
    async with running(make_engine(Retention())) as nursery:
        first = follow(nursery, "t")
        await first.until(lambda f: bool(f.events))
        start = first.events[0]
        assert isinstance(start, Subscribed) and start.position.offset == 0
        await topics.post("t", "while away")
        again = follow(nursery, "t", start.position)
        await again.until_offset(1)
        assert again.events[0] == Subscribed("t", start.position)
        assert [post.data for post in again.posts] == ["while away"]


async def test_snapshot_reads_history_without_subscribing(make_engine: EngineFactory) -> None:
    async with running(make_engine(Retention(count=2))):
        for data in ("a", b"b", "c"):
            last = await topics.post("t", data)
        snapshot = await topics.engine().snapshot("t")
        assert [post.data for post in snapshot.posts] == [b"b", "c"]
        assert snapshot.top == last.offset == 3


async def test_history_on_redis_outlives_the_node_that_posted(redis_url: str, prefix: str) -> None:
    async with running(RedisTopics(redis_url, prefix=prefix)):
        positions = [await topics.post("t", f"m{n}") for n in range(1, 4)]
    async with running(RedisTopics(redis_url, prefix=prefix)) as nursery:
        follower = follow(nursery, "t", positions[0])
        await follower.until_offset(3)
        assert follower.events[0] == Subscribed("t", positions[0])
        assert [post.data for post in follower.posts] == ["m2", "m3"]


async def test_redis_restarted_without_its_data_tells_subscribers_unrecoverable(
    private_redis: RedisServer, prefix: str
) -> None:
    engine = RedisTopics(private_redis.url, prefix=prefix)
    async with running(engine) as nursery:
        before = await topics.post("t", "before")
        follower = follow(nursery, "t", Position(before.epoch, 0))
        await follower.until_offset(1)
        private_redis.stop()
        private_redis.start()
        await follower.until(lambda f: isinstance(f.events[-1], Unrecoverable))
        lost = follower.events[-1]
        assert isinstance(lost, Unrecoverable) and lost.why is Lost.EPOCH
        assert lost.asked == before and lost.current.epoch != before.epoch
        after = await topics.post("t", "after")
        assert after == Position(lost.current.epoch, 1)
        await follower.until(lambda f: f.posts[-1].data == "after")
        assert [post.data for post in follower.posts] == ["before", "after"]


async def test_redis_flushed_under_a_live_subscriber_is_a_new_epoch_never_a_silent_gap(
    private_redis: RedisServer, prefix: str
) -> None:
    async with running(RedisTopics(private_redis.url, prefix=prefix)) as nursery:
        before = await topics.post("t", "before")
        follower = follow(nursery, "t", Position(before.epoch, 0))
        await follower.until_offset(1)
        with trio.socket.socket() as sock:
            await sock.connect(("127.0.0.1", private_redis.port))
            await sock.send(b"FLUSHALL\r\n")
            assert await sock.recv(16) == b"+OK\r\n"
        await topics.post("t", "after the flush")
        await follower.until(lambda f: f.posts[-1].data == "after the flush")
        kinds: list[Any] = [type(event) for event in follower.events]
        assert kinds == [Subscribed, Post, Unrecoverable, Post]


async def test_a_post_may_keep_its_topic_by_a_retention_of_its_own(
    make_engine: EngineFactory,
) -> None:
    async with running(make_engine(Retention(count=100))):
        for n in range(1, 6):
            await topics.post("short", f"m{n}", retention=Retention(count=2))
        snapshot = await topics.engine().snapshot("short")
        assert [post.data for post in snapshot.posts] == ["m4", "m5"]


async def test_a_forgotten_topic_starts_a_new_epoch(make_engine: EngineFactory) -> None:
    async with running(make_engine(Retention())) as nursery:
        before = await topics.post("t", "before")
        await topics.engine().forget("t")
        after = await topics.post("t", "after")
        assert after.offset == 1 and after.epoch != before.epoch
        follower = follow(nursery, "t", before)
        await follower.until_offset(1)
        answer = follower.events[0]
        assert isinstance(answer, Unrecoverable) and answer.why is Lost.EPOCH
        assert [post.data for post in follower.posts] == ["after"]


async def test_with_redis_gone_a_post_says_so_within_its_wait(
    private_redis: RedisServer, prefix: str
) -> None:
    engine = RedisTopics(private_redis.url, prefix=prefix, wait=0.2)
    async with running(engine):
        await topics.post("t", "while up")
        private_redis.stop()
        with pytest.raises(topics.TopicUnavailable, match="topic 't' is unavailable"):
            with trio.fail_after(5):
                while True:  # the first may still go out on the closing link
                    await topics.post("t", "while down")
