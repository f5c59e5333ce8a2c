"""Topics on Redis: history that outlives any node, positions handed out by Redis itself.

Each topic is three keys sharing a hash tag (``<prefix>:topic:{<name>}``): a hash with its
``epoch`` and ``top`` offset, a stream with its kept posts (trimmed by count and age), and a
pub/sub channel. One Lua script (``POST``) increments the offset, appends and publishes, so the
offsets in the stream and on the channel are the same, gapless, in one order. The epoch lives
in Redis: when Redis loses the topic (a restart without persistence, a flush, an expired idle
topic), the next script to touch it makes a new epoch, so old positions are ``Unrecoverable``.

Each node subscribes to the channels of the topics its actors follow, once per topic. A
subscriber is caught up in the background: registered first (live posts held), the channel
subscription confirmed, then one atomic read (``READ``), then the replay and what was held,
duplicates dropped (see ``topics`` for why that is exact). Subscribers waiting on one topic
share a read. A post out of order (``Next.GAP``: the epoch changed, or the link to Redis
dropped) and every reconnect catch each subscriber up again from its last position.
"""

from __future__ import annotations

import logging
import math
import secrets
from typing import Any

import trio

from .address import Address
from .broker_url import parse_broker_url
from .extras import MissingExtra
from .node import Node
from .topic_rules import Position, Retention, Snapshot, plan_resume
from .topic_scripts import POST, READ, TopicKeys, pack, parse_published, parse_read
from .topics import Deliver, Subscriber, Subscriptions, TopicUnavailable

try:
    import coredis
    import coredis.exceptions
    import coredis.retry
except ModuleNotFoundError as missing:
    raise MissingExtra("redis", "topics on Redis") from missing

from .backend_redis import BROKER_ERRORS  # the same failures: the same broker, the same client

logger = logging.getLogger("corral.topics")


class RedisTopics:
    """The topic engine of a cluster (see the module docstring); ``url`` and ``prefix`` as for
    ``RedisBackend``. Serve it with ``topics.serving(RedisTopics(url))``. A post or a read
    waits up to ``wait`` seconds for an unreachable Redis, then raises ``TopicUnavailable``."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "corral",
        retention: Retention | None = None,
        max_backoff: float = 0.5,
        wait: float = 2.0,
    ) -> None:
        self.broker = parse_broker_url(url)
        self.wait = wait
        """How long a post or a read waits for Redis while it is unreachable."""
        self.retention = retention or Retention()
        self.keys = TopicKeys(prefix)
        self.max_backoff = max_backoff
        self._subscriptions: Subscriptions | None = None
        self._client: coredis.Redis[bytes] | None = None
        self._scripts: dict[str, Any] = {}
        self._connected = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._sessions = 0
        """Sessions that reached Redis (a read is good only if the session did not change)."""
        self._was_up = False
        self._listening: set[str] = set()
        self._ready: dict[str, trio.Event] = {}
        self._channels_changed = trio.Event()
        self._waiting: dict[str, dict[Subscriber, int]] = {}
        self.reconnects = 0

    def attach(self, node: Node) -> None:
        """Deliver to ``node``'s actors."""
        self._subscriptions = Subscriptions(node, self._gap)

    # ---- the interface --------------------------------------------------------------

    async def post(
        self, topic: str, data: str | bytes, *, retention: Retention | None = None
    ) -> Position:
        """Post through the ``POST`` script (never retried: that could post twice)."""
        keep = retention or self.retention
        args = [secrets.token_hex(6), pack(data), keep.count, _milliseconds(keep.age)]
        epoch, offset = await self._run("post", topic, self.keys.of(topic), args)
        return Position(epoch.decode(), int(offset))

    async def snapshot(self, topic: str, after: Position | None = None) -> Snapshot:
        """The topic now, through the ``READ`` script."""
        epoch, offset = (after.epoch, after.offset) if after is not None else ("", 0)
        age = _milliseconds(self.retention.age)
        args = [secrets.token_hex(6), epoch, offset, age]
        return parse_read(topic, await self._run("read", topic, self.keys.of(topic)[:2], args))

    async def forget(self, topic: str) -> None:
        """Delete the topic's keys: the next post or read makes a new epoch."""
        await self._run("forget", topic, self.keys.of(topic)[:2], [])

    async def _run(self, script: str, topic: str, keys: list[str], args: list[Any]) -> Any:
        """Run a script (or DEL for ``forget``) once Redis is there, within ``wait``."""
        with trio.move_on_after(self.wait):
            await self._connected.wait()
        client = self._client
        try:
            if client is None:
                raise coredis.exceptions.ConnectionError("not connected")
            if script == "forget":
                return await client.delete(keys)
            return await self._scripts[script](keys=keys, args=args)
        except BROKER_ERRORS as error:
            raise TopicUnavailable(topic, error) from error

    def subscribe(
        self, topic: str, address: Address, after: Position | None, deliver: Deliver
    ) -> None:
        """Register at once; the answer and the replay follow once the channel is heard and
        the history read."""
        subscriber = self._subscribed().add(topic, address, deliver, after)
        self._catch_up(topic, subscriber)
        self._channels_changed.set()

    def unsubscribe(self, topic: str, address: Address) -> None:
        """End a subscription (the channel is left once the topic has no subscriber here)."""
        self._subscribed().remove(topic, address)
        self._channels_changed.set()

    def subscribers(self, topic: str) -> int:
        """How many subscribers ``topic`` has here."""
        return len(self._subscribed().by_topic.get(topic, ()))

    # ---- running --------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Stay connected, reconnecting with backoff; started at once (posts wait for Redis)."""
        backoff = first = min(0.05, self.max_backoff)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            while True:
                try:
                    await self._run_session()
                except* BROKER_ERRORS as group:
                    if trio.current_effective_deadline() != -math.inf:  # not stopping
                        logger.warning(
                            "topics: Redis at %s lost (%s)", self.broker.redacted, _first(group)
                        )
                if self._was_up:
                    backoff = first
                self._end_session()
                self.reconnects += 1
                await trio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)

    async def _run_session(self) -> None:
        client = coredis.Redis.from_url(
            self.broker.url,
            connect_timeout=2.0,
            retry_policy=coredis.retry.NoRetryPolicy(),
            **self.broker.client_options(),
        )
        # One channel always (an empty subscription would end the message loop at once).
        always = [f"{self.keys.prefix}:topics"]
        self._was_up = False
        async with client:
            async with client.pubsub(
                channels=always, retry_policy=None, ignore_subscribe_messages=True
            ) as pubsub:
                self._scripts = {
                    "post": client.register_script(POST),
                    "read": client.register_script(READ),
                }
                await client.ping()
                self._sessions += 1
                self._was_up = True
                self._client = client
                async with trio.open_nursery() as session:
                    session.start_soon(self._follow_channels, pubsub)
                    self._connected.set()
                    self._catch_up_all()
                    async for message in pubsub:
                        self._arrived(message)
                    raise coredis.exceptions.ConnectionError("Redis closed the subscription")

    def _end_session(self) -> None:
        """The link is gone: no channel is heard any more; readers waiting wake to wait anew."""
        self._connected = trio.Event()
        self._client = None
        self._listening = set()
        ready, self._ready = self._ready, {}
        for event in ready.values():
            event.set()

    def _arrived(self, message: Any) -> None:
        if message.get("type") != "message":
            return
        topic = self.keys.topic_of(message["channel"])
        self._subscribed().offer(parse_published(topic, message["data"]))

    async def _follow_channels(self, pubsub: Any) -> None:
        """Keep the channel subscriptions to the topics subscribed here, one change at a time."""
        while True:
            await self._channels_changed.wait()
            self._channels_changed = trio.Event()
            wanted = set(self._subscribed().by_topic)
            joining, leaving = wanted - self._listening, self._listening - wanted
            for topic in leaving:  # a subscriber arriving now waits for a rejoin
                old = self._ready.pop(topic, None)
                if old is not None:
                    old.set()  # wake readers still waiting: their subscribers have gone
            if leaving:
                await pubsub.unsubscribe(*(self.keys.of(topic)[2] for topic in leaving))
                self._listening -= leaving
            if joining:
                await pubsub.subscribe(*(self.keys.of(topic)[2] for topic in joining))
                self._listening |= joining
                for topic in joining:
                    self._ready_event(topic).set()

    def _ready_event(self, topic: str) -> trio.Event:
        event = self._ready.get(topic)
        if event is None:
            event = self._ready[topic] = trio.Event()
        return event

    # ---- catching up ----------------------------------------------------------------

    def _gap(self, topic: str, subscriber: Subscriber) -> None:
        """A post out of order: catch this subscriber up from its last position."""
        self._catch_up(topic, subscriber)

    def _catch_up_all(self) -> None:
        """Just (re)connected: every subscriber catches up from where it is."""
        for topic, subscribers in self._subscribed().by_topic.items():
            for subscriber in subscribers.values():
                if subscriber.held is None:
                    subscriber.held = []
                self._catch_up(topic, subscriber)
        self._channels_changed.set()

    def _catch_up(self, topic: str, subscriber: Subscriber) -> None:
        """Queue ``subscriber`` for its topic's next read (a newer request replaces an older)."""
        waiting = self._waiting.get(topic)
        fresh = waiting is None
        if waiting is None:
            waiting = self._waiting[topic] = {}
        subscriber.generation += 1
        waiting[subscriber] = subscriber.generation
        if fresh and self._nursery is not None:
            self._nursery.start_soon(self._read_for, topic)

    async def _read_for(self, topic: str) -> None:
        """Catch up the topic's waiting subscribers with one read each round, until none wait."""
        subscriptions = self._subscribed()
        while waiting := self._waiting.get(topic):
            for gone in [s for s in waiting if not subscriptions.current(topic, s)]:
                del waiting[gone]
            if not waiting:
                break
            session = await self._heard(topic)
            if session is None:
                continue  # the topic lost its subscribers meanwhile: look again
            batch = dict(waiting)
            waiting.clear()
            asked = {self._resume_point(subscriber) for subscriber in batch}
            try:
                snapshot = await self.snapshot(topic, asked.pop() if len(asked) == 1 else None)
                fresh = session == self._sessions and self._ready_event(topic).is_set()
            except TopicUnavailable:
                fresh = False
            if not fresh:  # the channel was not heard all along: read again
                for subscriber, generation in batch.items():
                    waiting.setdefault(subscriber, generation)
                await trio.sleep(0 if session == self._sessions else self.max_backoff)
                continue
            for subscriber, generation in batch.items():
                if subscriber.generation == generation:
                    after = self._resume_point(subscriber)
                    subscriptions.start(topic, subscriber, plan_resume(topic, after, snapshot))
        self._waiting.pop(topic, None)

    async def _heard(self, topic: str) -> int | None:
        """Wait until this session hears the topic's channel; return the session's number
        (None: the topic was left meanwhile)."""
        event = self._ready_event(topic)
        if not event.is_set():
            await event.wait()
            if self._ready_event(topic) is not event:
                return None
        return self._sessions

    def _resume_point(self, subscriber: Subscriber) -> Position | None:
        if subscriber.last is not None:
            return subscriber.last
        return subscriber.asked

    def _subscribed(self) -> Subscriptions:
        assert self._subscriptions is not None, "serve the engine with topics.serving(...)"
        return self._subscriptions


def _milliseconds(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _first(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
