"""A topic's rules as pure data and functions: positions, bounded history, resume, order.

A topic is a log: each post gets a ``Position``, the topic's ``epoch`` (a token that changes
whenever its history could have been lost) and an ``offset`` that grows by one per post, the
first post of an epoch being offset 1. A subscriber's position is that of the last post it
took, so ``Position(epoch, 0)`` is "before anything". No I/O here: the engines
(``topics``, ``topics_redis``) call these rules, and the tests call them without a socket.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Sequence
from itertools import islice

import attrs

from .wire_codec import wire_type


@wire_type
@attrs.frozen
class Position:
    """Where a post sits in its topic, or where a subscriber is: an epoch and an offset."""

    epoch: str
    offset: int


@wire_type
@attrs.frozen
class Post:
    """What a topic delivers: the post's data and its position (see ``topics.post``)."""

    topic: str
    position: Position
    data: str | bytes


@attrs.frozen
class Subscribed:
    """A subscription holds: the posts after ``position`` follow, in order, then the live ones."""

    topic: str
    position: Position


class Lost(enum.Enum):
    """Why a position cannot be resumed from."""

    EPOCH = "epoch"
    """It is from another epoch: the history it belongs to is gone (a restart, Redis lost)."""
    TRIMMED = "trimmed"
    """The posts right after it were trimmed away (older or more than the topic keeps)."""
    FUTURE = "future"
    """Its offset is past the topic's last post: it was never handed out in this epoch."""


@attrs.frozen
class Unrecoverable:
    """The position ``asked`` cannot be honoured (``why``); the subscription holds anyway from
    ``position``: the history still there (the posts after it, up to ``current``) follows, then
    the live posts. What lies between ``asked`` and ``position`` is lost to this subscriber."""

    topic: str
    asked: Position
    why: Lost
    position: Position
    current: Position


@attrs.frozen
class Lagged:
    """The subscriber did not take a post (a full mailbox or outbox): its subscription ended
    after ``position``, which it may subscribe again from to get the rest."""

    topic: str
    position: Position


TopicEvent = Post | Subscribed | Unrecoverable | Lagged
"""Everything a subscription delivers."""


@attrs.frozen
class Retention:
    """How much history a topic keeps: at most ``count`` posts, none older than ``age`` seconds."""

    count: int = 1000
    age: float = 24 * 3600.0

    def __attrs_post_init__(self) -> None:
        if self.count < 1 or not self.age > 0:
            raise ValueError(f"a retention needs count >= 1 and age > 0, not {self}")


@attrs.frozen
class Snapshot:
    """A topic at one instant: its epoch, last offset, and the posts still kept after some
    offset (oldest first, contiguous, ending at ``top``)."""

    epoch: str
    top: int
    posts: Sequence[Post]

    @property
    def first(self) -> int:
        """The offset the kept posts start at (``top + 1`` when none is kept)."""
        return self.posts[0].position.offset if self.posts else self.top + 1


@attrs.frozen
class Replay:
    """A resume that holds: deliver ``answer`` then ``posts`` (exactly those after the asked
    position, up to the snapshot's top)."""

    answer: Subscribed | Unrecoverable
    posts: Sequence[Post]
    last: Position
    """Where the subscriber is once they are delivered: later posts must follow it."""


def plan_resume(topic: str, asked: Position | None, snapshot: Snapshot) -> Replay:
    """What a subscriber asking to resume after ``asked`` gets from ``snapshot``.

    ``snapshot.posts`` must hold every kept post after ``asked`` (or all kept, if the asked
    position cannot be honoured). No position: nothing is replayed, live posts follow. A
    position of this epoch whose next post is kept (or not yet posted): those posts. Another
    epoch, an offset past ``top``, or one whose next post was trimmed: ``Unrecoverable``, with
    every kept post, so that the subscriber sees what is still there and no silent gap.
    """
    current = Position(snapshot.epoch, snapshot.top)
    if asked is None:
        return Replay(Subscribed(topic, current), (), current)
    why = _why_lost(asked, snapshot)
    if why is None:
        posts = [post for post in snapshot.posts if post.position.offset > asked.offset]
        return Replay(Subscribed(topic, asked), posts, current)
    start = Position(snapshot.epoch, snapshot.first - 1)
    return Replay(Unrecoverable(topic, asked, why, start, current), snapshot.posts, current)


def _why_lost(asked: Position, snapshot: Snapshot) -> Lost | None:
    if asked.epoch != snapshot.epoch:
        return Lost.EPOCH
    if asked.offset > snapshot.top:
        return Lost.FUTURE
    if asked.offset < snapshot.first - 1:
        return Lost.TRIMMED
    return None


class Next(enum.Enum):
    """What a subscriber at some position does with a post that arrives live."""

    TAKE = "take"
    """The next one: deliver it."""
    DUPLICATE = "duplicate"
    """Already delivered (by the replay): drop it."""
    GAP = "gap"
    """Posts are missing before it (or its epoch changed): catch up from history first."""


def next_step(last: Position, arrived: Position) -> Next:
    """Whether ``arrived`` follows ``last`` with no gap and no duplicate."""
    if arrived.epoch != last.epoch:
        return Next.GAP
    if arrived.offset <= last.offset:
        return Next.DUPLICATE
    if arrived.offset == last.offset + 1:
        return Next.TAKE
    return Next.GAP


class History:
    """One topic's kept posts in memory, trimmed by count and age on the times it is given."""

    def __init__(self, topic: str, epoch: str, retention: Retention) -> None:
        self.topic = topic
        self.epoch = epoch
        self.top = 0
        self.retention = retention
        self._kept: deque[tuple[float, Post]] = deque(maxlen=retention.count)

    def retain(self, retention: Retention) -> None:
        """Keep by ``retention`` from now on (the oldest posts go if it keeps fewer)."""
        if retention != self.retention:
            self.retention = retention
            self._kept = deque(self._kept, maxlen=retention.count)

    def append(self, data: str | bytes, now: float) -> Post:
        """Give ``data`` the next position, keep it, and return the post."""
        self.top += 1
        post = Post(self.topic, Position(self.epoch, self.top), data)
        self._kept.append((now, post))
        self.trim(now)
        return post

    def trim(self, now: float) -> None:
        """Drop the posts older than the retention's age."""
        oldest = now - self.retention.age
        kept = self._kept
        while kept and kept[0][0] < oldest:
            kept.popleft()

    def snapshot(self, after: Position | None, now: float) -> Snapshot:
        """The topic now, with the kept posts after ``after`` (all kept ones if it cannot be
        resumed from: another epoch, before the kept ones, past the top)."""
        self.trim(now)
        skip = 0
        if (
            self._kept
            and after is not None
            and after.epoch == self.epoch
            and after.offset <= self.top
        ):
            skip = max(0, after.offset - self._kept[0][1].position.offset + 1)
        posts = tuple(post for _, post in islice(self._kept, skip, None))
        return Snapshot(self.epoch, self.top, posts)
