"""A Python client for topics (services, tests): trio-websocket, reconnects, resumes.

``async with open_topic_client(url) as client`` (or a list of URLs, tried in turn):
``await client.subscribe(topic)``, then ``async for event in client`` gives each ``Post``
once, in order, and an ``Unrecoverable`` when the server could not resume a topic (what it
still keeps follows as posts). The client keeps the last position of every topic; when the
connection drops it reconnects after a random wait up to ``min_delay * 2**attempt`` seconds
(full jitter, at most ``max_delay``) and subscribes again from those positions. Needs the
``client`` extra (trio-websocket).
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio

from actors.extras import MissingExtra
from actors.topics import Lost, Position, Post, Unrecoverable

try:
    from trio_websocket import ConnectionClosed as ConnectionClosed
    from trio_websocket import HandshakeError, WebSocketConnection, open_websocket_url
except ModuleNotFoundError as missing:
    raise MissingExtra("client", "the topic client (server.topics.client)") from missing

ClientEvent = Post | Unrecoverable
"""What a ``TopicClient`` gives: posts, and the news that some were lost."""

_DROPPED = (HandshakeError, ConnectionClosed, OSError, trio.BrokenResourceError)


class TopicClient:
    """One reconnecting connection to a topics route (see the module docstring)."""

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        min_delay: float = 0.25,
        max_delay: float = 10.0,
        positions: dict[str, Position | None] | None = None,
    ) -> None:
        self.urls = [url] if isinstance(url, str) else list(url)
        """Where to connect: the first, then the next after each drop or failed attempt."""
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.positions: dict[str, Position | None] = dict(positions or {})
        """The last position seen per subscribed topic (None: none yet)."""
        self.connects = 0
        self._ws: WebSocketConnection | None = None
        self._send, self._events = trio.open_memory_channel[ClientEvent](10_000)

    async def subscribe(self, topic: str, after: Position | None = None) -> None:
        """Follow ``topic`` from ``after`` (default: the position already kept, else live)."""
        self.positions[topic] = after if after is not None else self.positions.get(topic)
        await self._subscribe(topic)

    async def unsubscribe(self, topic: str) -> None:
        """Stop following ``topic``."""
        self.positions.pop(topic, None)
        await self._send_now({"type": "unsubscribe", "topic": topic})

    async def receive(self) -> ClientEvent:
        """The next post (or ``Unrecoverable``)."""
        return await self._events.receive()

    def __aiter__(self) -> TopicClient:
        return self

    async def __anext__(self) -> ClientEvent:
        return await self.receive()

    async def drop(self) -> None:
        """Close the current connection as if the network failed (it reconnects): for tests."""
        if self._ws is not None:
            await self._ws.aclose(4000, "dropped")

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Stay connected until cancelled; started at once."""
        task_status.started()
        attempt = turn = 0
        while True:
            url = self.urls[turn % len(self.urls)]
            turn += 1
            try:
                async with open_websocket_url(url) as ws:
                    self._ws = ws
                    self.connects += 1
                    attempt = 0
                    for topic in list(self.positions):
                        await self._subscribe(topic)
                    while True:
                        text = await ws.get_message()
                        await self._received(json.loads(text), text)
            except _DROPPED:
                pass
            finally:
                self._ws = None
            await trio.sleep(random.uniform(0, min(self.max_delay, self.min_delay * 2**attempt)))
            attempt += 1

    async def _received(self, message: dict[str, Any], text: str | bytes) -> None:
        """One frame: a post of a followed topic (a ``post``, or an app's own frame carrying
        ``topic``, ``epoch`` and ``offset``: its whole text is the data), or an answer."""
        topic, kind = message.get("topic"), message.get("type")
        epoch, offset = message.get("epoch"), message.get("offset")
        if topic not in self.positions or not isinstance(epoch, str) or type(offset) is not int:
            return
        assert isinstance(topic, str)
        position = Position(epoch, offset)
        last = self.positions[topic]
        seen = last is not None and last.epoch == position.epoch and position.offset <= last.offset
        if kind not in ("subscribed", "unrecoverable"):
            if seen:
                return  # seen before the reconnect
            self.positions[topic] = position
            data: str | bytes = text
            if kind == "post":
                data = message["data"]
                data = base64.b64decode(data) if message.get("base64") else data
            await self._send.send(Post(topic, position, data))
        elif kind == "subscribed" and not seen:
            self.positions[topic] = position
        elif kind == "unrecoverable":
            if not seen:  # never back: the posts up to where this client is were shown
                self.positions[topic] = position
            asked, current = message["asked"], message["current"]
            await self._send.send(
                Unrecoverable(
                    topic,
                    Position(asked["epoch"], asked["offset"]),
                    Lost(message["why"]),
                    position,
                    Position(current["epoch"], current["offset"]),
                )
            )

    async def _subscribe(self, topic: str) -> None:
        position = self.positions.get(topic)
        where = {} if position is None else {"epoch": position.epoch, "offset": position.offset}
        await self._send_now({"type": "subscribe", "topic": topic, **where})

    async def _send_now(self, message: dict[str, Any]) -> None:
        """Send if connected (else the next connection subscribes from the kept positions)."""
        if self._ws is not None:
            try:
                await self._ws.send_message(json.dumps(message))
            except _DROPPED:
                pass


@asynccontextmanager
async def open_topic_client(url: str | Sequence[str], **options: Any) -> AsyncIterator[TopicClient]:
    """A ``TopicClient`` connected (and reconnecting) for the duration of the block."""
    client = TopicClient(url, **options)
    async with trio.open_nursery() as nursery:
        await nursery.start(client.run)
        yield client
        nursery.cancel_scope.cancel()
