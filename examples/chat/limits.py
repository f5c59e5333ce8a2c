"""The chat's limits per client, as plain data and decisions (no I/O, times passed in).

``ChatLimits`` holds every number. ``Throttle`` is one connection's inbound rate limit: a
``server.TokenBucket`` and the count of frames it dropped in a row, deciding for each client
frame whether it is handled, dropped with a warning, dropped quietly, or ends the connection.
``PeerQuota`` gives each peer address (an IPv6 client: its /64) a bucket (of new rooms, of
messages said by all its connections together), and ``PeerCount`` caps how many of its
connections are in rooms at once.
"""

from __future__ import annotations

import enum

import attrs

from server import TokenBucket
from server.front.peers import PeerCount, address_group

__all__ = ["ChatLimits", "PeerCount", "PeerQuota", "Throttle", "Verdict", "peer_key"]

MIB = 2**20


@attrs.frozen
class ChatLimits:
    """How much one client, and all of them together, may cost the chat server."""

    message_rate: float = 10.0
    """Frames a connection may send per second, sustained (every text frame counts)."""
    message_burst: int = 100
    """Frames a connection may send at once after a quiet spell (a pasted block of lines)."""
    flood_close_after: int = 100
    """Frames dropped in a row (the client keeps sending past its rate) before a 1008 close."""
    max_rooms: int = 10_000
    """Rooms running at once; at the limit the least recently used empty room makes way."""
    max_history_bytes: int = 64 * MIB
    """History kept across all rooms; past it empty rooms go, least recently used first."""
    room_creation_rate: float = 1.0
    """New rooms one peer address may open per second, sustained."""
    room_creation_burst: int = 20
    """New rooms one peer address may open at once."""
    max_members_per_peer: int = 256
    """Connections from one peer address that may be in rooms (have asked to join) at once."""
    peer_message_rate: float = 20.0
    """Messages (``say``) one peer address may send per second, all its connections together:
    opening more connections, or reconnecting for a fresh burst, gains nothing past it."""
    peer_message_burst: int = 100
    """Messages one peer address may send at once, all its connections together."""
    room_message_rate: float = 50.0
    """Messages one room passes on per second, whoever sends them: what its readers must keep
    up with (a reader's outbox holds 256 frames)."""
    room_message_burst: int = 100
    """Messages one room passes on at once after a quiet spell."""


class Verdict(enum.Enum):
    """What to do with one client frame."""

    ACCEPT = "accept"
    """Within the rate: handle it."""
    WARN = "warn"
    """Over the rate, first of a run: drop it and tell the client to slow down."""
    DROP = "drop"
    """Over the rate again: drop it (the client was told)."""
    CLOSE = "close"
    """Over the rate for ``flood_close_after`` frames in a row: close with 1008."""


@attrs.define
class Throttle:
    """One connection's inbound rate: tokens, and how many frames were dropped in a row."""

    bucket: TokenBucket
    close_after: int
    dropped: int = 0

    @classmethod
    def for_limits(cls, limits: ChatLimits) -> Throttle:
        """A full throttle for a new connection."""
        bucket = TokenBucket(rate=limits.message_rate, burst=limits.message_burst)
        return cls(bucket, limits.flood_close_after)

    def admit(self, now: float) -> Verdict:
        """The verdict on a frame that arrived at ``now``."""
        if self.bucket.take(now):
            self.dropped = 0
            return Verdict.ACCEPT
        self.dropped += 1
        if self.dropped >= self.close_after:
            return Verdict.CLOSE
        return Verdict.WARN if self.dropped == 1 else Verdict.DROP

    def slow_down(self, now: float) -> str:
        """The ``error`` reason for a warned client."""
        rate, burst = self.bucket.rate, self.bucket.burst
        wait = self.bucket.wait_time(now)
        return (
            f"slow down: at most {rate:g} messages a second (bursts of {burst:g}); "
            f"messages are dropped for the next {wait:.1f} s, and a client that keeps "
            "sending is disconnected"
        )


def peer_key(peer: tuple[str, int] | None) -> str:
    """Whom a quota counts: the peer's IP address, or its /64 for IPv6 (``address_group``)."""
    return "unknown" if peer is None else address_group(peer[0])


@attrs.define
class PeerQuota:
    """A token bucket per peer key, made on first use and forgotten once full again."""

    rate: float
    burst: float
    _buckets: dict[str, TokenBucket] = attrs.field(factory=dict, init=False)
    _prune_at: int = attrs.field(default=1024, init=False)

    def take(self, key: str, now: float) -> bool:
        """Whether ``key`` may have one more at ``now`` (and it is counted)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(rate=self.rate, burst=self.burst)
        allowed = bucket.take(now)
        if len(self._buckets) >= self._prune_at:
            self._prune(now)
        return allowed

    def __len__(self) -> int:
        return len(self._buckets)

    def _prune(self, now: float) -> None:
        """Forget full buckets (a new one says the same); next prune at twice what is left."""
        self._buckets = {k: b for k, b in self._buckets.items() if not b.is_full(now)}
        self._prune_at = max(1024, 2 * len(self._buckets))
