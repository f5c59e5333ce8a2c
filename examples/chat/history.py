"""Where a room's last messages outlive the room: nowhere on one node, in Redis on a cluster.

A room keeps its history in memory (``roster``); on a cluster it also appends each message
here, and a room starting again (on another node, after its node died) loads what was kept.
Each node runs one ``ChatHistory`` child: on the Redis backend it opens a client on the
cluster's own Redis and prefix, and writes in the background, in order, one pipeline per batch
(``RPUSH``, ``LTRIM`` to the last 50, ``PEXPIRE`` to the empty room's lifetime), so a ``say``
never waits on Redis. On one node it keeps nothing (the room's memory is all there is).

A stand-in until topics (issue 20) hold the history: ``load`` and ``append`` are all a room uses.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from typing import TYPE_CHECKING

import trio

from actors import Actor, ChildSpec, Restart

from . import protocol
from .protocol import Said

if TYPE_CHECKING:
    import coredis

logger = logging.getLogger("corral.chat")


class ChatHistory:
    """This node's link to the kept history (``child_spec`` runs it; rooms ``load`` and
    ``append``)."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        """Seconds a room's kept history outlives its last message."""
        self._client: coredis.Redis[bytes] | None = None
        self._prefix = ""
        self._queue: deque[tuple[str, Said]] = deque()
        self._wakeup = trio.Event()

    def child_spec(self, id: str = "history") -> ChildSpec:
        """The node's history writer, under the app's root supervisor."""
        return ChildSpec(id, self._run, restart=Restart.PERMANENT, kind="chat history")

    def _key(self, room: str) -> str:
        return f"{self._prefix}:chat:history:{room}"

    async def load(self, room: str) -> list[Said]:
        """The messages kept for ``room``, oldest first (none on one node, or if Redis fails)."""
        client = self._client
        if client is None:
            return []
        from actors.backend_redis import BROKER_ERRORS

        try:
            values = await client.lrange(self._key(room), 0, -1)
        except BROKER_ERRORS as error:
            logger.warning("chat: the history of %r could not be read (%s)", room, error)
            return []
        return [message for value in values if (message := _decoded(value)) is not None]

    def append(self, room: str, message: Said) -> None:
        """Keep ``message`` for ``room`` (queued: never waits; nothing on one node)."""
        if self._client is not None:
            self._queue.append((room, message))
            self._wakeup.set()

    async def _run(self, actor: Actor) -> None:
        backend = actor.node.backend
        from actors.backend_redis import RedisBackend

        if not isinstance(backend, RedisBackend):
            await trio.sleep_forever()
        import coredis

        client = coredis.Redis.from_url(backend.broker.url, **backend.broker.client_options())
        async with client:
            self._client, self._prefix = client, backend.keys.prefix
            try:
                await self._write(client)
            finally:
                self._client = None

    async def _write(self, client: coredis.Redis[bytes]) -> None:
        ttl_ms = int(self.ttl * 1000)
        while True:
            if not self._queue:
                self._wakeup = trio.Event()
                await self._wakeup.wait()
            batch = list(self._queue)
            self._queue.clear()
            async with client.pipeline(transaction=False) as pipe:
                for room in dict.fromkeys(room for room, _ in batch):
                    said = [json.dumps(m.as_dict()) for r, m in batch if r == room]
                    key = self._key(room)
                    pipe.rpush(key, said)
                    pipe.ltrim(key, -protocol.HISTORY_SIZE, -1)
                    pipe.pexpire(key, ttl_ms)


def _decoded(value: bytes | str) -> Said | None:
    """A kept message, or None if what Redis holds is not one."""
    try:
        fields = json.loads(value)
        return Said(str(fields["nick"]), str(fields["text"]), str(fields["at"]))
    except (ValueError, KeyError, TypeError):
        return None
