"""The topic wire format: JSON text frames, as the spec in docs/topics.md says. Pure.

Server to client: ``subscribed``, ``unrecoverable``, ``post``, ``error``. Client to server:
``subscribe`` and ``unsubscribe``. A position is two fields, ``epoch`` (a string) and
``offset`` (an integer); a client keeps the last one it saw per topic and sends it back
to resume. A post's frame is the same for every subscriber, so it is encoded once.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import attrs

from actors.topics import Position, Post, Subscribed, TopicEvent, Unrecoverable

MAX_TOPIC = 256
"""Longest topic name a client may send (characters)."""


@attrs.frozen
class Subscribe:
    """A client asks for ``topic``'s posts after ``after`` (None: the live ones only)."""

    topic: str
    after: Position | None


@attrs.frozen
class Unsubscribe:
    """A client no longer wants ``topic``."""

    topic: str


@attrs.frozen
class BadRequest:
    """A client frame that is not a request: ``why`` goes back in an ``error`` frame."""

    why: str


Request = Subscribe | Unsubscribe | BadRequest


def encode(event: TopicEvent) -> str:
    """The frame for one event (``Lagged`` never goes to a client: the server resubscribes)."""
    if isinstance(event, Post):
        return encode_post(event)
    if isinstance(event, Subscribed):
        return _dumps({"type": "subscribed", "topic": event.topic, **_position(event.position)})
    if isinstance(event, Unrecoverable):
        return _dumps(
            {
                "type": "unrecoverable",
                "topic": event.topic,
                **_position(event.position),
                "why": event.why.value,
                "asked": _position(event.asked),
                "current": _position(event.current),
            }
        )
    raise TypeError(f"{type(event).__name__} is not sent to clients")


def encode_post(post: Post) -> str:
    """``{"type": "post", "topic", "epoch", "offset", "data"}``; bytes data go as base64 with
    ``"base64": true``."""
    frame = {"type": "post", "topic": post.topic, **_position(post.position)}
    if isinstance(post.data, bytes):
        frame["data"] = base64.b64encode(post.data).decode()
        frame["base64"] = True
    else:
        frame["data"] = post.data
    return _dumps(frame)


def error(why: str) -> str:
    """An ``error`` frame."""
    return _dumps({"type": "error", "error": why})


def parse(text: str) -> Request:
    """What a client frame asks for."""
    try:
        message = json.loads(text)
    except ValueError:
        return BadRequest("not JSON")
    if not isinstance(message, dict):
        return BadRequest("not a JSON object")
    topic = message.get("topic")
    if not isinstance(topic, str) or not 0 < len(topic) <= MAX_TOPIC:
        return BadRequest(f"topic must be a string of 1 to {MAX_TOPIC} characters")
    kind = message.get("type")
    if kind == "unsubscribe":
        return Unsubscribe(topic)
    if kind != "subscribe":
        return BadRequest("type must be subscribe or unsubscribe")
    epoch, offset = message.get("epoch"), message.get("offset")
    if epoch is None and offset is None:
        return Subscribe(topic, None)
    if not isinstance(epoch, str) or type(offset) is not int or offset < 0:
        return BadRequest("a position is an epoch (string) and an offset (integer >= 0)")
    return Subscribe(topic, Position(epoch, offset))


def _position(position: Position) -> dict[str, Any]:
    return {"epoch": position.epoch, "offset": position.offset}


def _dumps(frame: dict[str, Any]) -> str:
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


__all__ = [
    "BadRequest",
    "Request",
    "Subscribe",
    "Unsubscribe",
    "encode",
    "encode_post",
    "error",
    "parse",
]
