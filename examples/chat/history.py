"""Where a room's last messages outlive the room: nowhere on one node, in its topic on a cluster.

A room keeps its history in memory (``roster``); on a cluster it also posts each message to its
topic ``room:<room>`` (``actors.topics`` on Redis: the last 50 kept, until ``ttl`` seconds after
the last), and a room starting again (on another node, after its node died) loads what the topic
keeps. Each node runs one ``ChatHistory`` child, which posts in the background, in order, so a
``say`` never waits on Redis. On one node it keeps nothing (the room's memory is all there is,
and the history budget counts it).
"""

from __future__ import annotations

import json
import logging
from collections import deque

import trio

from actors import Actor, ChildSpec, Restart, topics
from actors.topics import LocalTopics, Retention, TopicEngine

from . import protocol
from .protocol import Said

logger = logging.getLogger("corral.chat")


def topic_of(room: str) -> str:
    """The topic that keeps ``room``'s messages."""
    return f"room:{room}"


class ChatHistory:
    """This node's link to the kept history (``child_spec`` runs it; rooms ``load`` and
    ``append``)."""

    def __init__(self, ttl: float) -> None:
        self.retention = Retention(count=protocol.HISTORY_SIZE, age=ttl)
        """What a room's topic keeps: its last 50 messages, ``ttl`` seconds past the last."""
        self._engine: TopicEngine | None = None
        self._queue: deque[tuple[str, Said]] = deque()
        self._wakeup = trio.Event()

    def child_spec(self, id: str = "history") -> ChildSpec:
        """The node's history writer, under the app's root supervisor."""
        return ChildSpec(id, self._run, restart=Restart.PERMANENT, kind="chat history")

    async def load(self, room: str) -> list[Said]:
        """The messages kept for ``room``, oldest first (none on one node, or if Redis fails)."""
        if self._engine is None:
            return []
        try:
            snapshot = await self._engine.snapshot(topic_of(room))
        except topics.TopicUnavailable as error:
            logger.warning("chat: the history of %r could not be read (%s)", room, error)
            return []
        return [message for post in snapshot.posts if (message := _decoded(post.data))]

    def append(self, room: str, message: Said) -> None:
        """Keep ``message`` for ``room`` (queued: never waits; nothing on one node)."""
        if self._engine is not None:
            self._queue.append((room, message))
            self._wakeup.set()

    async def _run(self, actor: Actor) -> None:
        engine = topics.engine(actor.node)
        if isinstance(engine, LocalTopics):
            await trio.sleep_forever()
        self._engine = engine
        try:
            await self._write(engine)
        finally:
            self._engine = None

    async def _write(self, engine: TopicEngine) -> None:
        while True:
            if not self._queue:
                self._wakeup = trio.Event()
                await self._wakeup.wait()
            room, message = self._queue.popleft()
            data = json.dumps(message.as_dict(), ensure_ascii=False)
            try:
                await engine.post(topic_of(room), data, retention=self.retention)
            except topics.TopicUnavailable as error:
                logger.warning("chat: a message of %r was not kept (%s)", room, error)


def _decoded(value: str | bytes) -> Said | None:
    """A kept message, or None if the topic holds something else."""
    try:
        fields = json.loads(value)
        return Said(str(fields["nick"]), str(fields["text"]), str(fields["at"]))
    except (ValueError, KeyError, TypeError):
        return None
