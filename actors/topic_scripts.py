"""What topics on Redis keep and say, as data: the keys, the two Lua scripts, the encodings.

Pure: ``topics_redis`` runs the scripts and reads the channels; the tests check these without
a Redis.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from .topic_rules import Position, Post, Snapshot

POST = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'top', 0)
end
local offset = redis.call('HINCRBY', KEYS[1], 'top', 1)
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], '*', 'd', ARGV[2])
redis.call('XTRIM', KEYS[2], 'MINID', ms - tonumber(ARGV[4]))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('PUBLISH', KEYS[3], epoch .. '\\n' .. offset .. '\\n' .. ARGV[2])
return {epoch, offset}
"""
"""Post ``ARGV[2]`` (a kind byte, then the data): a new epoch ``ARGV[1]`` if the topic has none
(its stale stream dropped), the next offset, appended (at most ``ARGV[3]`` kept, none older
than ``ARGV[4]`` ms), published as ``epoch\\noffset\\n<data>``; returns the position."""

READ = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'top', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
local top = tonumber(redis.call('HGET', KEYS[1], 'top'))
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('XTRIM', KEYS[2], 'MINID', ms - tonumber(ARGV[4]))
local kept = redis.call('XLEN', KEYS[2])
local want = kept
if ARGV[2] == epoch then
  local after = tonumber(ARGV[3])
  if after <= top and after >= top - kept then want = top - after end
end
local entries = {}
if want > 0 then entries = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', want) end
return {epoch, top, entries}
"""
"""The topic at one instant (a new epoch if it has none): epoch, top offset, and the kept
posts after ``ARGV[3]`` when ``ARGV[2]`` is its epoch and those are all kept, else every kept
post; newest first (the stream's entries end at ``top``, so the n-th from the end is
``top - n``)."""


@attrs.frozen
class TopicKeys:
    """The keys and channel of each topic under one prefix."""

    prefix: str

    def of(self, topic: str) -> list[str]:
        """Meta hash, stream, channel (one hash tag: one slot on Redis Cluster)."""
        base = f"{self.prefix}:topic:{{{topic}}}"
        return [f"{base}:meta", f"{base}:log", f"{base}:chan"]

    def topic_of(self, channel: bytes) -> str:
        """The topic a channel belongs to."""
        text = channel.decode()
        return text[text.index("{") + 1 : text.rindex("}")]


def pack(data: str | bytes) -> bytes:
    """Data as stored and published: a kind byte (``s`` text, ``b`` bytes), then the data."""
    return b"s" + data.encode() if isinstance(data, str) else b"b" + data


def unpack(stored: bytes) -> str | bytes:
    """The data ``pack`` stored."""
    return stored[1:].decode() if stored[:1] == b"s" else stored[1:]


def parse_published(topic: str, payload: bytes) -> Post:
    """A post as the channel carries it: ``epoch\\noffset\\n<packed data>``."""
    epoch, offset, packed = payload.split(b"\n", 2)
    return Post(topic, Position(epoch.decode(), int(offset)), unpack(packed))


def parse_read(topic: str, reply: Sequence[Any]) -> Snapshot:
    """``READ``'s reply as a snapshot, oldest post first."""
    epoch, top, entries = reply[0].decode(), int(reply[1]), reply[2]
    posts = [
        Post(topic, Position(epoch, top - n), unpack(_field(entry[1], b"d")))
        for n, entry in enumerate(entries)
    ]
    posts.reverse()
    return Snapshot(epoch, top, tuple(posts))


def _field(fields: Any, name: bytes) -> bytes:
    """A stream entry's field (a flat list, or a mapping, depending on the client)."""
    if isinstance(fields, dict):
        return bytes(fields[name])
    pairs = dict(zip(fields[::2], fields[1::2], strict=True))
    return bytes(pairs[name])
