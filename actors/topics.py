"""Topics: posts with positions, bounded history, and resume with no gap and no duplicate.

A group (``actors.publish``) offers a message to whoever is a member now, at most once. A topic
keeps what was posted: ``await topics.post(topic, data)`` gives the post the topic's next
``Position`` (epoch, offset) and keeps it in a bounded history (``Retention``: by count and
age). ``topics.subscribe(topic, after)`` subscribes the calling actor; it first gets
``Subscribed`` (or ``Unrecoverable``: the position is of another epoch, trimmed away or from
the future, and what history remains follows), then each post after ``after`` in order, then
the live ones, each exactly once, in ``websocket_info`` for a connection (or as frames written
straight to it: ``server.topics``).

Two engines behind one interface (``TopicEngine``): ``LocalTopics``, in the process (the
default on every node; its epoch is new in every process, so a restart is seen), and
``topics_redis.RedisTopics`` (the cluster: history in Redis survives any node).

Why a resume is exact (both engines): a subscriber is registered for live posts *before* the
history is read, and live posts wait while it catches up. The history read is atomic and gives
the top offset ``T``: the replay is exactly the posts after the asked offset up to ``T``; every
post after ``T`` was made after the read, so after the registration, so it arrives live; a live
post at or below ``T`` was also replayed and is dropped (``next_step``). In process the
registration, the read and the replay happen in one step, so nothing can come between.

The history API (for the chat and anyone): ``post``, ``subscribe``, ``unsubscribe``,
``engine().snapshot(topic, after)`` (the kept posts, without subscribing).
"""

from __future__ import annotations

import itertools
import secrets
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Protocol

import attrs
import trio

from .actor import current_actor
from .address import Address
from .errors import ActorError
from .node import Node, current_node
from .topic_rules import (
    History,
    Lagged,
    Lost,
    Next,
    Position,
    Post,
    Replay,
    Retention,
    Snapshot,
    Subscribed,
    TopicEvent,
    Unrecoverable,
    next_step,
    plan_resume,
)


class TopicUnavailable(ActorError):
    """The engine could not reach where topics live (Redis): a post may or may not have been
    made (it is never retried, which could post it twice); a read can be tried again."""

    def __init__(self, topic: str, cause: BaseException) -> None:
        self.topic = topic
        self.cause = cause
        super().__init__(f"topic {topic!r} is unavailable: {cause or type(cause).__name__}")


Deliver = Callable[[TopicEvent], bool]
"""How a subscriber takes an event: True if it did (its mailbox, or frames to a connection)."""


class TopicEngine(Protocol):
    """Where topics keep their history and how their posts reach this node's subscribers."""

    retention: Retention

    def attach(self, node: Node) -> None:
        """Called once by ``serving`` with the node whose actors subscribe."""
        ...

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the engine's own tasks until cancelled (started once it can be used)."""
        ...

    async def post(
        self, topic: str, data: str | bytes, *, retention: Retention | None = None
    ) -> Position:
        """Give ``data`` the topic's next position, keep it (by ``retention``, default the
        engine's), deliver it; return the position."""
        ...

    async def forget(self, topic: str) -> None:
        """Drop the topic's history: its next post starts a new epoch (old positions are
        ``Unrecoverable``)."""
        ...

    async def snapshot(self, topic: str, after: Position | None = None) -> Snapshot:
        """The topic's epoch, top offset and the kept posts after ``after`` (all if None)."""
        ...

    def subscribe(
        self, topic: str, address: Address, after: Position | None, deliver: Deliver
    ) -> None:
        """Subscribe a local actor (again: its old subscription ends), resuming after
        ``after``; never waits: the answer and the replay arrive through ``deliver``."""
        ...

    def unsubscribe(self, topic: str, address: Address) -> None:
        """End a subscription (no error if there is none)."""
        ...

    def subscribers(self, topic: str) -> int:
        """How many subscribers ``topic`` has on this node."""
        ...


@attrs.define(eq=False)
class Subscriber:
    """One local subscription: where it is, and the live posts held while it catches up."""

    address: Address
    deliver: Deliver
    asked: Position | None = None
    """The position it subscribed with (None: live posts only)."""
    last: Position | None = None
    """The position of the last post it took (None until its answer is delivered)."""
    held: list[Post] | None = attrs.field(factory=list)
    """Live posts that arrived while catching up (None once caught up)."""
    generation: int = 0
    """Counts its catch-ups: one that finishes after a newer one was asked for is ignored."""
    suspect: str | None = None
    """The epoch of a post that sent it to catch up (is it newer, or a dead history's?)."""
    dead: set[str] = attrs.field(factory=set)
    """Epochs a catch-up found gone: their posts are dropped (a post published just before
    its history was dropped, say), not caught up from again and again."""


class Subscriptions:
    """This node's subscribers per topic, and the one rule for handing them events in order.

    Both engines use it: ``add`` (holding live posts), ``start`` (answer, replay, then what was
    held), ``offer`` (a live post). A post out of order (``Next.GAP``) goes to ``on_gap``; a
    subscriber that does not take an event is dropped and told ``Lagged``.
    """

    def __init__(self, node: Node, on_gap: Callable[[str, Subscriber], None]) -> None:
        self.node = node
        self.on_gap = on_gap
        self.by_topic: dict[str, dict[Address, Subscriber]] = {}

    def add(
        self, topic: str, address: Address, deliver: Deliver, asked: Position | None
    ) -> Subscriber:
        """Register a subscriber, holding its live posts until ``start``."""
        subscriber = Subscriber(address, deliver, asked)
        self.by_topic.setdefault(topic, {})[address] = subscriber
        return subscriber

    def remove(self, topic: str, address: Address) -> None:
        """Forget a subscriber (no error if it is gone)."""
        subscribers = self.by_topic.get(topic)
        if subscribers is not None:
            subscribers.pop(address, None)
            if not subscribers:
                del self.by_topic[topic]

    def current(self, topic: str, subscriber: Subscriber) -> bool:
        """Whether ``subscriber`` is still the topic's subscription for its address."""
        return self.by_topic.get(topic, {}).get(subscriber.address) is subscriber

    def start(self, topic: str, subscriber: Subscriber, replay: Replay) -> None:
        """Deliver the answer and the replay, then the live posts held meanwhile."""
        if not self.current(topic, subscriber):
            return
        held, subscriber.held = subscriber.held or [], None
        subscriber.last = replay.last
        if subscriber.suspect is not None and subscriber.suspect != replay.last.epoch:
            subscriber.dead.add(subscriber.suspect)
        subscriber.suspect = None
        if not self._hand(topic, subscriber, replay.answer):
            return
        for post in replay.posts:
            if not self._hand(topic, subscriber, post):
                return
        for post in held:  # duplicates of the replay are dropped; a gap holds the rest again
            self._take(topic, subscriber, post)
            if not self.current(topic, subscriber):
                return

    def offer(self, post: Post) -> int:
        """Hand a live post to the topic's subscribers; return how many took it."""
        subscribers = self.by_topic.get(post.topic)
        if not subscribers:
            return 0
        taken = 0
        position = post.position
        epoch, previous = position.epoch, position.offset - 1
        actor = self.node.actor
        for subscriber in list(subscribers.values()):
            last = subscriber.last
            # The common case, the one rule made quick: caught up, this post is the next one.
            if (
                subscriber.held is None
                and last is not None
                and last.offset == previous
                and last.epoch == epoch
            ):
                if actor(subscriber.address) is None:
                    self.remove(post.topic, subscriber.address)
                elif subscriber.deliver(post):
                    subscriber.last = position
                    taken += 1
                else:
                    self._refused(post.topic, subscriber)
            else:
                taken += self._take(post.topic, subscriber, post)
        return taken

    def _take(self, topic: str, subscriber: Subscriber, post: Post) -> bool:
        if subscriber.held is not None:
            subscriber.held.append(post)
            return False
        assert subscriber.last is not None
        step = next_step(subscriber.last, post.position)
        if step is Next.TAKE:
            return self._hand(topic, subscriber, post)
        epoch = post.position.epoch
        if step is Next.GAP and epoch not in subscriber.dead:
            if epoch != subscriber.last.epoch:
                subscriber.suspect = epoch
            subscriber.held = [post]
            self.on_gap(topic, subscriber)
        return False

    def _hand(self, topic: str, subscriber: Subscriber, event: TopicEvent) -> bool:
        """Deliver one event; a subscriber that is gone or does not take it is dropped."""
        if self.node.actor(subscriber.address) is None:
            self.remove(topic, subscriber.address)
            return False
        if subscriber.deliver(event):
            if isinstance(event, Post):
                subscriber.last = event.position
            return True
        self._refused(topic, subscriber)
        return False

    def _refused(self, topic: str, subscriber: Subscriber) -> None:
        """It did not take an event: its subscription ends where it is, and it is told."""
        self.remove(topic, subscriber.address)
        if subscriber.last is not None:
            self.node.notify(subscriber.address, Lagged(topic, subscriber.last))


class LocalTopics:
    """Topics in this process: history in memory, an epoch of its own per engine (so per
    process: a client holding a position from before a restart is told ``Unrecoverable``).
    A topic posted to stays (its top offset and what it keeps) until ``forget``."""

    def __init__(self, retention: Retention | None = None, *, epoch: str | None = None) -> None:
        self.retention = retention or Retention()
        self.epoch = epoch or secrets.token_hex(6)
        self._histories: dict[str, History] = {}
        self._generations: itertools.count[int] | None = None
        """Once a topic was forgotten, every topic made afterwards has an epoch of its own (a
        topic made again must not hand out the positions of its old life; none is remembered)."""
        self._subscriptions: Subscriptions | None = None
        self._undelivered: deque[Post] = deque()

    def attach(self, node: Node) -> None:
        """Deliver to ``node``'s actors."""
        self._subscriptions = Subscriptions(node, self._resume)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Nothing to run: ready at once."""
        task_status.started()

    async def post(
        self, topic: str, data: str | bytes, *, retention: Retention | None = None
    ) -> Position:
        """Keep and deliver ``data`` at once (no await inside: posts keep their callers' order)."""
        return self.post_now(topic, data, retention=retention)

    def post_now(
        self, topic: str, data: str | bytes, *, retention: Retention | None = None
    ) -> Position:
        """``post`` without waiting (this engine never needs to)."""
        history = self._history(topic)
        if retention is not None:
            history.retain(retention)
        post = history.append(data, trio.current_time())
        self._undelivered.append(post)
        if len(self._undelivered) == 1:  # else a delivery is under way (a post from inside it)
            subscriptions = self._subscribed()
            while self._undelivered:
                subscriptions.offer(self._undelivered[0])
                self._undelivered.popleft()
        return post.position

    async def snapshot(self, topic: str, after: Position | None = None) -> Snapshot:
        """The topic's kept posts after ``after``."""
        return self._history(topic).snapshot(after, trio.current_time())

    def subscribe(
        self, topic: str, address: Address, after: Position | None, deliver: Deliver
    ) -> None:
        """Register, read the history and replay it in one step (nothing comes between)."""
        subscriber = self._subscribed().add(topic, address, deliver, after)
        self._replay(topic, subscriber, after)

    def unsubscribe(self, topic: str, address: Address) -> None:
        """End a subscription."""
        self._subscribed().remove(topic, address)

    def subscribers(self, topic: str) -> int:
        """How many subscribers ``topic`` has here."""
        return len(self._subscribed().by_topic.get(topic, ()))

    def _replay(self, topic: str, subscriber: Subscriber, after: Position | None) -> None:
        snapshot = self._history(topic).snapshot(after, trio.current_time())
        self._subscribed().start(topic, subscriber, plan_resume(topic, after, snapshot))

    def _resume(self, topic: str, subscriber: Subscriber) -> None:
        """A post out of order (posts are delivered in order here, so never expected): the
        subscriber catches up from history, as after a reconnect."""
        self._replay(topic, subscriber, subscriber.last)

    async def forget(self, topic: str) -> None:
        """Drop the topic's history (nothing of it is kept); it starts again in an epoch of
        its own."""
        if self._histories.pop(topic, None) is not None and self._generations is None:
            self._generations = itertools.count(1)

    def _history(self, topic: str) -> History:
        history = self._histories.get(topic)
        if history is None:
            epoch = self.epoch
            if self._generations is not None:
                epoch = f"{self.epoch}.{next(self._generations)}"
            history = self._histories[topic] = History(topic, epoch, self.retention)
        return history

    def _subscribed(self) -> Subscriptions:
        if self._subscriptions is None:
            self.attach(current_node())
        assert self._subscriptions is not None
        return self._subscriptions


_engines: weakref.WeakKeyDictionary[Node, TopicEngine] = weakref.WeakKeyDictionary()


def engine(node: Node | None = None) -> TopicEngine:
    """The node's topic engine (default: the current node's; ``LocalTopics`` unless one is
    being served with ``serving``)."""
    node = node or current_node()
    found = _engines.get(node)
    if found is None:
        found = _engines[node] = LocalTopics()
        found.attach(node)
    return found


@asynccontextmanager
async def serving(topic_engine: TopicEngine, node: Node | None = None) -> AsyncIterator[None]:
    """Make ``topic_engine`` the node's for the block, running its tasks."""
    node = node or current_node()
    topic_engine.attach(node)
    async with trio.open_nursery() as nursery:
        await nursery.start(topic_engine.serve)
        _engines[node] = topic_engine
        try:
            yield
        finally:
            _engines.pop(node, None)
            nursery.cancel_scope.cancel()


async def post(topic: str, data: str | bytes, *, retention: Retention | None = None) -> Position:
    """Post ``data`` to ``topic`` on the current node's engine (kept by ``retention``, default
    the engine's); return its position."""
    return await engine().post(topic, data, retention=retention)


def subscribe(topic: str, after: Position | None = None, *, deliver: Deliver | None = None) -> None:
    """Subscribe the calling actor to ``topic``, resuming after ``after`` (None: live posts
    only). Events arrive in its mailbox unless ``deliver`` takes them (``server.topics``)."""
    actor = current_actor()
    engine().subscribe(topic, actor.address, after, deliver or actor.mailbox.offer)


def unsubscribe(topic: str) -> None:
    """End the calling actor's subscription to ``topic``."""
    engine().unsubscribe(topic, current_actor().address)


__all__ = [
    "Deliver",
    "Lagged",
    "LocalTopics",
    "Lost",
    "Position",
    "Post",
    "Retention",
    "Snapshot",
    "Subscribed",
    "Subscriber",
    "Subscriptions",
    "TopicEngine",
    "TopicEvent",
    "TopicUnavailable",
    "Unrecoverable",
    "engine",
    "post",
    "serving",
    "subscribe",
    "unsubscribe",
]
