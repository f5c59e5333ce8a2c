"""A token bucket: how often something may happen, with room for a burst.

Pure arithmetic on times the caller passes in (``trio.current_time()`` in a handler), so it runs
under trio's ``MockClock`` or with no clock at all in a unit test. A handler keeps one per
connection in its state and asks it before acting on each client message::

    bucket = TokenBucket(rate=10.0, burst=100)  # 10 a second, up to 100 at once
    if not bucket.take(trio.current_time()):
        return Text('{"type": "error", "reason": "slow down"}'), state
"""

from __future__ import annotations

from typing import Any

import attrs


def _positive(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, not {value!r}")


@attrs.define
class TokenBucket:
    """``burst`` tokens at most, refilled at ``rate`` tokens a second; each event takes one.

    A new bucket is full. Time that goes backwards (a caller mixing clocks) refills nothing.
    """

    rate: float = attrs.field(validator=_positive)
    """Tokens added per second: the sustained rate allowed."""
    burst: float = attrs.field(validator=_positive)
    """The bucket's size: how many events may come at once after a quiet spell."""
    tokens: float = attrs.field(default=attrs.Factory(lambda self: self.burst, takes_self=True))
    """Tokens in the bucket at ``updated``."""
    updated: float | None = None
    """When ``tokens`` was last brought up to date (None: never, the bucket is as built)."""

    def available(self, now: float) -> float:
        """The tokens the bucket holds at ``now`` (refilling it up to then)."""
        if self.updated is not None and now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        if self.updated is None or now > self.updated:
            self.updated = now
        return self.tokens

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens at ``now`` if the bucket holds them; if not, take none: False."""
        if self.available(now) < cost:
            return False
        self.tokens -= cost
        return True

    def wait_time(self, now: float, cost: float = 1.0) -> float:
        """Seconds from ``now`` until ``cost`` tokens are there (0.0 if they already are)."""
        missing = cost - self.available(now)
        return max(0.0, missing / self.rate)

    def is_full(self, now: float) -> bool:
        """Whether the bucket has refilled completely: it then says no more than a new one."""
        return self.available(now) >= self.burst
