"""Per-address accounting: whom a per-address limit counts, and how much each one holds.

A limit per client address must not be dodged by an IPv6 client, which usually holds a whole
/64 (2^64 addresses): ``address_group`` counts IPv6 by its /64, IPv4 (and IPv4-mapped IPv6)
by the address. ``PeerCount`` holds how many of something each group has at once.
Pure data and decisions, no I/O: the front door and the chat example use both.
"""

from __future__ import annotations

import socket

import attrs

_V4_MAPPED = bytes(10) + b"\xff\xff"
"""The first 12 bytes of an IPv4-mapped IPv6 address (``::ffff:a.b.c.d``)."""


def address_group(host: str) -> str:
    """Whom a per-address limit counts for ``host``: the IPv4 address, or the IPv6 /64."""
    if ":" not in host:
        return host  # IPv4 (the hot path: no parsing)
    try:
        packed = socket.inet_pton(socket.AF_INET6, host.partition("%")[0])
    except OSError:
        return host
    if packed[:12] == _V4_MAPPED:
        return socket.inet_ntop(socket.AF_INET, packed[12:])
    # The C functions, not ipaddress: this runs on every accepted connection (20 times faster).
    return socket.inet_ntop(socket.AF_INET6, packed[:8] + bytes(8)) + "/64"


@attrs.define
class PeerCount:
    """How many of something each peer group holds at once, at most ``limit``."""

    limit: int
    _counts: dict[str, int] = attrs.field(factory=dict, init=False)

    def acquire(self, key: str) -> bool:
        """Count one more for ``key`` if it is under the limit; False (nothing counted) if not."""
        held = self._counts.get(key, 0)
        if held >= self.limit:
            return False
        self._counts[key] = held + 1
        return True

    def release(self, key: str) -> None:
        """One fewer for ``key``."""
        held = self._counts.pop(key, 0) - 1
        if held > 0:
            self._counts[key] = held

    def held(self, key: str) -> int:
        """How many ``key`` holds."""
        return self._counts.get(key, 0)

    def __len__(self) -> int:
        """How many keys hold something (the rest are forgotten)."""
        return len(self._counts)
