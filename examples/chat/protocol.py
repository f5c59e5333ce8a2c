"""The chat's wire format: what clients may send, the checks on it, what the server sends.

Plain functions and records, no I/O. Client frames are JSON objects with a ``type``:
``{"type": "join", "nick": str, "epoch": str, "offset": int}`` (``epoch`` and ``offset``
optional, together) and ``{"type": "say", "text": str, "id": int}`` (``id`` optional). Server
frames are ``history``, ``members``, ``joined``, ``left``, ``said``, ``sent`` and ``error`` (see
the encoders below), and the topics' ``subscribed`` and ``unrecoverable`` (docs/topics.md).

Resume: a room's messages are posts of its topic ``room:<room>``. ``said`` carries the
message's position (``topic``, ``epoch``, ``offset``) and ``history`` the position it ends at;
the client keeps the last one it showed. A join without a position gets ``history`` (the
room's last messages), then every message after it. A join with ``epoch`` and ``offset`` gets
no ``history``: ``{"type": "subscribed", "topic", "epoch", "offset"}`` then exactly the ``said``
frames after that position, in order, once each; or, when the position cannot be honoured (the
room's history started again: another ``epoch``; the messages right after it are no longer
kept: ``trimmed``; past the last message: ``future``), ``{"type": "unrecoverable", "topic",
"epoch", "offset", "why", "asked", "current"}`` then the messages still kept, after (epoch,
offset): what lies between ``asked`` and them is lost, and the client says so. ``members``
comes too (before them with ``--redis``, where the topic is read from Redis).
A client drops a ``said`` whose position is not after the one it holds in the same epoch.

Limits: a nick is 1 to 32 characters with no leading or trailing spaces (nor characters that
look like spaces, such as U+2800) and no control, format, unassigned or default-ignorable
characters (U+034F, U+FE0F, U+3164...); it is unique in its room regardless of case and of
look-alike characters (Unicode's confusable skeleton: "аdmin" with a Cyrillic а is "admin").
A text is a non-blank string of at most 4096 bytes of UTF-8; a room name is 1 to 64 characters
with no leading or trailing spaces and the same forbidden characters as a nick.
"""

from __future__ import annotations

import json
import unicodedata
from datetime import UTC, datetime
from typing import Any

import attrs

from actors.topics import Position

from .confusables import has_default_ignorable, skeleton

MAX_TEXT_BYTES = 4096
MAX_NICK_CHARS = 32
MAX_ROOM_CHARS = 64
HISTORY_SIZE = 50
MAX_SAY_ID = 2**53
"""A say's ``id`` fits a JavaScript number exactly."""
MAX_EPOCH_CHARS = 64
MESSAGE_OVERHEAD = 256
"""What a message of history costs besides its text, nick and time (the objects holding them)."""
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


@attrs.frozen
class JoinRequest:
    """The client asks to join the room under ``nick``, resuming after ``after`` (the position
    of the last message it showed) if it gives one."""

    nick: str
    after: Position | None = None


@attrs.frozen
class SayRequest:
    """The client says ``text`` to the room; with an ``id``, the server answers ``sent`` (or an
    ``error`` carrying the id) once the room has it, so that the page keeps the text until then."""

    text: str
    id: int | None = None


@attrs.frozen
class BadInput:
    """The frame was refused; ``reason`` goes back to the client in an ``error``."""

    reason: str


ClientMessage = JoinRequest | SayRequest | BadInput


@attrs.frozen
class Said:
    """One message of a room's history."""

    nick: str
    text: str
    at: str
    """When the room received it: ISO 8601, UTC, milliseconds."""

    def as_dict(self) -> dict[str, str]:
        """The message's fields as they go on the wire."""
        return {"nick": self.nick, "text": self.text, "at": self.at}

    def cost(self) -> int:
        """The bytes this message holds in a room's history, roughly: its UTF-8 and objects."""
        text = len(self.nick.encode()) + len(self.text.encode()) + len(self.at)
        return text + MESSAGE_OVERHEAD


# ---- client to server ---------------------------------------------------------------------


def parse(data: str) -> ClientMessage:
    """Decode and check one client text frame."""
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):
        return BadInput('not JSON: send an object such as {"type": "say", "text": "hi"}')
    if not isinstance(message, dict):
        return BadInput('expected a JSON object with a "type"')
    kind = message.get("type")
    if kind == "join":
        nick: Any = message.get("nick")
        problem = nick_problem(nick)
        after = _position(message)
        if problem is None and isinstance(after, str):
            problem = after
        if problem is not None:
            return BadInput(problem)
        return JoinRequest(nick, after if isinstance(after, Position) else None)
    if kind == "say":
        text: Any = message.get("text")
        problem = text_problem(text)
        say_id: Any = message.get("id")
        if say_id is not None and (type(say_id) is not int or not 0 <= say_id < MAX_SAY_ID):
            problem = f'bad id: "id" is an integer from 0 to {MAX_SAY_ID - 1}'
        return SayRequest(text, say_id) if problem is None else BadInput(problem)
    return BadInput(f"unknown type {_short(kind)}")


def _position(message: dict[str, Any]) -> Position | str | None:
    """A join's position to resume after: None if it has none, or why it is not one."""
    epoch, offset = message.get("epoch"), message.get("offset")
    if epoch is None and offset is None:
        return None
    if not isinstance(epoch, str) or not 1 <= len(epoch) <= MAX_EPOCH_CHARS:
        return f'bad position: "epoch" is a string of 1 to {MAX_EPOCH_CHARS} characters'
    if type(offset) is not int or not 0 <= offset < MAX_SAY_ID:
        return f'bad position: "offset" is an integer from 0 to {MAX_SAY_ID - 1}'
    return Position(epoch, offset)


def nick_problem(nick: Any) -> str | None:
    """Why ``nick`` is not an acceptable nick, or None if it is."""
    if not isinstance(nick, str) or not 1 <= len(nick) <= MAX_NICK_CHARS:
        return f"bad nick: use 1 to {MAX_NICK_CHARS} characters"
    if nick != nick.strip():
        return "bad nick: no leading or trailing spaces"
    if not _printable(nick):
        return "bad nick: no control or invisible characters"
    shape = skeleton(nick)
    if not shape.strip():
        return "bad nick: it looks blank, use visible characters"
    if shape != shape.strip():
        return "bad nick: no leading or trailing spaces, nor characters that look like them"
    return None


def text_problem(text: Any) -> str | None:
    """Why ``text`` cannot be said, or None if it can."""
    if not isinstance(text, str) or not text.strip():
        return 'empty text: "text" must be a non-blank string'
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return "bad text: not valid Unicode (lone surrogate)"
    if size > MAX_TEXT_BYTES:
        return f"text too long: {size} bytes of UTF-8, at most {MAX_TEXT_BYTES}"
    return None


def room_name(value: str) -> str:
    """Route constraint for ``/ws/:room``: the name itself, or ValueError (the route fails)."""
    if not 1 <= len(value) <= MAX_ROOM_CHARS or value != value.strip() or not _printable(value):
        raise ValueError(f"a room name is 1 to {MAX_ROOM_CHARS} printable characters")
    return value


def nick_key(nick: str) -> str:
    """The nick's confusable skeleton, case-folded: ``Ann``, ``ＡＮＮ`` and ``аnn`` (Cyrillic а)
    share it, so they are the same nick."""
    return skeleton(unicodedata.normalize("NFKC", nick).casefold())


def nick_keys(nick: str) -> frozenset[str]:
    """What nick uniqueness compares: two nicks clash when they share a key.

    ``nick_key`` folds case before the skeleton; the skeleton of the nick as typed, folded
    after, adds the look-alikes that only capitals have (``Ian`` clashes with ``lan``).
    """
    compatible = unicodedata.normalize("NFKC", nick)
    return frozenset({nick_key(nick), skeleton(compatible).casefold()})


def _printable(value: str) -> bool:
    if any(unicodedata.category(char) in _FORBIDDEN_CATEGORIES for char in value):
        return False
    return not has_default_ignorable(value)


def _short(value: Any) -> str:
    """A bounded rendering of a client-supplied value for an error message."""
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= 40 else text[:37] + "..."


# ---- server to client ---------------------------------------------------------------------


def now() -> str:
    """The current time as the ``at`` of a message."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def encode(kind: str, **fields: Any) -> str:
    """One server frame: a compact JSON object with ``type`` first."""
    return json.dumps({"type": kind, **fields}, ensure_ascii=False, separators=(",", ":"))


def history(messages: list[Said], topic: str, position: Position | None) -> str:
    """``{"type": "history", "messages": [{nick, text, at}...], "topic", "epoch", "offset"}``,
    oldest first, ending at the position given (none if the history could not be read)."""
    listed = [message.as_dict() for message in messages]
    if position is None:
        return encode("history", messages=listed)
    return encode("history", messages=listed, **_where(topic, position))


def members(nicks: list[str]) -> str:
    """``{"type": "members", "nicks": [...]}``, in join order."""
    return encode("members", nicks=nicks)


def joined(nick: str) -> str:
    """``{"type": "joined", "nick": ...}``: someone (maybe the receiver) joined."""
    return encode("joined", nick=nick)


def left(nick: str) -> str:
    """``{"type": "left", "nick": ...}``: someone left (closed, vanished or was dropped)."""
    return encode("left", nick=nick)


def said(message: Said) -> str:
    """``{"type": "said", "nick", "text", "at"}``: to everyone in the room, sender included."""
    return encode("said", **message.as_dict())


def said_at(message: Said, topic: str, position: Position) -> str:
    """``said`` with the message's position in its room's topic added: ``topic``, ``epoch``,
    ``offset`` (what a client resumes from)."""
    return said(message)[:-1] + "," + encode("", **_where(topic, position))[len('{"type":"",') :]


def _where(topic: str, position: Position) -> dict[str, Any]:
    return {"topic": topic, "epoch": position.epoch, "offset": position.offset}


def sent(say_id: int) -> str:
    """``{"type": "sent", "id": ...}``: the room has the sender's say of that id."""
    return encode("sent", id=say_id)


def error(reason: str, say_id: int | None = None) -> str:
    """``{"type": "error", "reason": ...}``: only to the client concerned; with the ``id`` of
    the say it is about (not sent: the page keeps its text)."""
    if say_id is None:
        return encode("error", reason=reason)
    return encode("error", reason=reason, id=say_id)
