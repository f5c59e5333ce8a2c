"""A room's messages as posts to its topic ``room:<room>``: what members receive, resume and load.

Each message of a room is a post to its topic (``actors.topics``: in the process on one node,
on Redis with ``--redis``), kept as the room's roster keeps it (at most the last 50, fewer when
the history budget sheds, until ``ttl`` seconds after the last). Members follow the topic
(``follow``), so a ``said`` reaches them with its position (``epoch``, ``offset``) and a client
that comes back with its last position gets exactly what it missed. A room starting again (after
a crash, on another node after its node died) loads what the topic keeps.

Each node runs one ``ChatHistory`` child, which posts in the background, in order, so a ``say``
never waits on Redis; a message the topic cannot take (Redis unreachable) still reaches the
members, without a position. A room that stops for being empty forgets its topic (its history
goes with it: a client holding a position of it is told ``unrecoverable``).
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable

import attrs
import trio

from actors import Actor, ChildSpec, Restart, topics
from actors.topics import Position, Post, Retention, TopicEngine
from server import broadcast
from server.topics import subscribe_frames

from . import protocol
from .protocol import Said

logger = logging.getLogger("corral.chat")


def topic_of(room: str) -> str:
    """The topic that keeps ``room``'s messages."""
    return f"room:{room}"


@attrs.frozen
class Kept:
    """A room's history as a joining client gets it: its messages and the position they end at."""

    messages: list[Said]
    position: Position | None
    """None: the topic could not be read (the client follows live posts only)."""


@attrs.frozen
class _Append:
    room: str
    message: Said
    kept: int
    then: Callable[[], object] | None


@attrs.frozen
class _Forget:
    room: str


class ChatHistory:
    """This node's link to the rooms' topics (``child_spec`` runs it; rooms ``load``, ``append``
    and ``forget``; connections ``read`` and ``follow``)."""

    def __init__(self, ttl: float, group_of: Callable[[str], str]) -> None:
        self.ttl = ttl
        """How long a room's topic keeps its messages after the last one."""
        self.group_of = group_of
        """The group of a room's members (a message the topic cannot take goes to it)."""
        self._queue: deque[_Append | _Forget] = deque()
        self._wakeup = trio.Event()

    def child_spec(self, id: str = "history") -> ChildSpec:
        """The node's history writer, under the app's root supervisor."""
        return ChildSpec(id, self._run, restart=Restart.PERMANENT, kind="chat history")

    async def load(self, room: str) -> list[Said]:
        """The messages kept for ``room``, oldest first (none if Redis fails)."""
        return (await self.read(room, protocol.HISTORY_SIZE)).messages

    async def read(self, room: str, count: int) -> Kept:
        """At most the last ``count`` messages kept for ``room``, and where they end."""
        try:
            snapshot = await topics.engine().snapshot(topic_of(room))
        except topics.TopicUnavailable as error:
            logger.warning("chat: the history of %r could not be read (%s)", room, error)
            return Kept([], None)
        posts = snapshot.posts[len(snapshot.posts) - count :] if count > 0 else []
        messages = [message for post in posts if (message := _decoded(post.data))]
        return Kept(messages, Position(snapshot.epoch, snapshot.top))

    def append(
        self, room: str, message: Said, kept: int, then: Callable[[], object] | None = None
    ) -> None:
        """Post ``message`` to ``room``'s topic, which keeps its last ``kept`` (queued: never
        waits); the topic delivers it to the members, and ``then`` is called (the sender's
        ``Heard``, which so follows the ``said``)."""
        self._queue.append(_Append(room, message, max(1, kept), then))
        self._wakeup.set()

    def forget(self, room: str) -> None:
        """Drop ``room``'s history (queued after its messages)."""
        self._queue.append(_Forget(room))
        self._wakeup.set()

    async def _run(self, actor: Actor) -> None:
        engine = topics.engine(actor.node)
        while True:
            if not self._queue:
                self._wakeup = trio.Event()
                await self._wakeup.wait()
            await self._write(engine, self._queue.popleft())

    async def _write(self, engine: TopicEngine, entry: _Append | _Forget) -> None:
        topic = topic_of(entry.room)
        try:
            if isinstance(entry, _Forget):
                await engine.forget(topic)
                return
            data = json.dumps(entry.message.as_dict(), ensure_ascii=False)
            retention = Retention(count=entry.kept, age=self.ttl)
            await engine.post(topic, data, retention=retention)
        except topics.TopicUnavailable as error:
            logger.warning("chat: the topic of %r is unavailable (%s)", entry.room, error)
            if isinstance(entry, _Append):  # the members get it anyway, without a position
                broadcast(self.group_of(entry.room), protocol.said(entry.message))
        if isinstance(entry, _Append) and entry.then is not None:
            entry.then()


def follow(room: str, kept: Kept | None, after: Position | None) -> None:
    """Subscribe the calling connection to ``room``'s topic: after ``kept`` (the history it
    was just sent: no ``subscribed`` frame) or resuming after ``after`` (``subscribed`` or
    ``unrecoverable`` first, then what it missed). Its posts come as ``said`` frames."""
    if kept is not None:
        subscribe_frames(topic_of(room), kept.position, render=said_frame, announce=False)
    else:
        subscribe_frames(topic_of(room), after, render=said_frame)


def unfollow(room: str) -> None:
    """End the calling connection's subscription to ``room``'s topic (it is closing)."""
    topics.unsubscribe(topic_of(room))


class SaidFrame:
    """Renders a post of a room's topic as members get it: ``said`` with its ``topic``,
    ``epoch`` and ``offset``. A class, not a function: a subscription holds it for its life,
    and an upgrade gives a class (not a function) its new code in place."""

    def __call__(self, post: Post) -> str:
        message = _decoded(post.data) or Said("", "", "")
        return protocol.said_at(message, post.topic, post.position)


said_frame = SaidFrame()


def _decoded(value: str | bytes) -> Said | None:
    """A kept message, or None if the topic holds something else."""
    try:
        fields = json.loads(value)
        return Said(str(fields["nick"]), str(fields["text"]), str(fields["at"]))
    except (ValueError, KeyError, TypeError):
        return None
