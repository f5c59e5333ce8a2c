"""Is the client still there? Idle timeout and keepalive pings, decided without I/O.

Any byte from the client counts as activity (a data frame, a fragment, a pong), so a
client streaming one large message slowly is not idle. The connection notes when bytes
arrive; ``Liveness`` decides, at each check, what to do next.
"""

from __future__ import annotations

import enum
import math

import attrs


class Verdict(enum.Enum):
    """What a liveness check concludes."""

    ALIVE = "alive"
    SEND_PING = "send_ping"
    IDLE = "idle"
    NO_PONG = "no_pong"


@attrs.define
class Liveness:
    """Idle timeout and ping/pong deadlines for one connection (times are trio clock seconds)."""

    idle_timeout: float | None
    ping_interval: float | None
    pong_timeout: float
    last_received: float
    ping_sent_at: float | None = None

    def check(self, now: float) -> Verdict:
        """Decide at ``now``: still alive, time to ping, or gone."""
        # Deadlines are computed as next_check computes them (``a + b``, not ``now - a``), so
        # a check at the due time always acts: float rounding can make ``now - a >= b`` false
        # when ``a + b == now``, and the check would reschedule itself for ``now`` forever.
        if self.idle_timeout is not None and now >= self.last_received + self.idle_timeout:
            return Verdict.IDLE
        if self.ping_sent_at is not None:
            if self.last_received >= self.ping_sent_at:  # a pong may come at the same tick
                self.ping_sent_at = None
            elif now >= self.ping_sent_at + self.pong_timeout:
                return Verdict.NO_PONG
        if (
            self.ping_interval is not None
            and self.ping_sent_at is None
            and now >= self.last_received + self.ping_interval
        ):
            self.ping_sent_at = now
            return Verdict.SEND_PING
        return Verdict.ALIVE

    def next_check(self, now: float) -> float:
        """When the next check is due (inf: never)."""
        due = math.inf
        if self.idle_timeout is not None:
            due = min(due, self.last_received + self.idle_timeout)
        if self.ping_sent_at is not None:
            due = min(due, self.ping_sent_at + self.pong_timeout)
        elif self.ping_interval is not None:
            due = min(due, self.last_received + self.ping_interval)
        return max(due, now)
