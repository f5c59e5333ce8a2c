"""Give freed heap memory back to the system after a burst of connections (glibc's malloc_trim).

After thousands of connections come and go (a flood, an attack, a reconnect storm) or big
messages pass, glibc's malloc keeps the freed pages for reuse and the process's RSS stays near
its peak. Once such a burst is over, ``MemoryTrimmer`` runs the collector's full pass (garbage
cycles, a handler's state say, are freed first), then ``malloc_trim(0)`` in a worker
thread, which hands the free pages back. ``TrimSchedule`` is the pure decision of when; the
trimmer only samples and carries it out. Off where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import attrs
import trio

logger = logging.getLogger("corral.server")


def _at_least(minimum: float) -> Callable[[object, attrs.Attribute[Any], float], None]:
    def check(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
        if not value >= minimum:
            raise ValueError(f"{attribute.name} must be >= {minimum:g}, not {value!r}")

    return check


@attrs.frozen
class TrimPolicy:
    """When a burst is over and worth a trim (``ServerOptions.memory_trim``)."""

    min_burst: int = attrs.field(default=1000, validator=_at_least(1))
    """Connections accepted since the last trim that make a burst worth a trim..."""
    min_growth: int = attrs.field(default=32 * 2**20, validator=_at_least(1))
    """...or bytes the RSS has grown by since the last trim (big messages, floods of frames
    on a few connections)."""
    low_fraction: float = attrs.field(default=0.25, validator=_at_least(0.0))
    """The burst is over once the open connections have fallen to this share of their peak..."""
    quiet_accepts: int = attrs.field(default=100, validator=_at_least(0))
    """...and at most this many connections were accepted during the last interval."""
    interval: float = attrs.field(default=1.0, validator=_at_least(0.001))
    """Seconds between two looks at the connection counts and the RSS."""


@attrs.define
class TrimSchedule:
    """Decides, from periodic samples of the connection counts and the RSS, when to trim.

    ``observe(accepted, open_now, rss)`` takes the running total of accepted connections, the
    number open now and the RSS; it answers True when, since the last trim, at least
    ``min_burst`` connections were accepted or the RSS grew by ``min_growth``, and the burst is
    over: the open connections have fallen to ``low_fraction`` of their peak and the last
    interval was quiet. True counts as a trim: the next burst starts there, from the RSS that
    ``trimmed`` reports (else the RSS before the trim).
    """

    policy: TrimPolicy
    _accepted_at_trim: int = 0
    _accepted_before: int = 0
    _peak_open: int = 0
    _rss_floor: int | None = None

    def observe(self, accepted: int, open_now: int, rss: int) -> bool:
        """One sample; whether to trim now."""
        if self._rss_floor is None:
            self._rss_floor = rss
        self._peak_open = max(self._peak_open, open_now)
        recent = accepted - self._accepted_before
        self._accepted_before = accepted
        burst = (
            accepted - self._accepted_at_trim >= self.policy.min_burst
            or rss - self._rss_floor >= self.policy.min_growth
        )
        due = (
            burst
            and open_now <= self._peak_open * self.policy.low_fraction
            and recent <= self.policy.quiet_accepts
        )
        if due:
            self._accepted_at_trim = accepted
            self._peak_open = open_now
            self._rss_floor = rss
        return due

    def trimmed(self, rss: int) -> None:
        """The RSS after the trim ``observe`` called for: growth counts from there."""
        self._rss_floor = rss


@attrs.frozen
class Trim:
    """One trim: the RSS before and after (bytes), the seconds malloc_trim took (in a worker
    thread) and those the collection before it took (on the event loop)."""

    rss_before: int
    rss_after: int
    seconds: float
    gc_seconds: float = 0.0


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None on another C library (musl, macOS...)."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (ValueError, OSError, AttributeError):
        return None
    return trim


MALLOC_TRIM = _malloc_trim()
"""glibc's ``malloc_trim(pad)``; None where the C library is not glibc."""


def resident_bytes() -> int:
    """This process's resident set size (Linux: /proc/self/statm; 0 elsewhere)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def trim_now() -> Trim:
    """Call ``malloc_trim(0)`` (blocking: from a worker thread) and measure it."""
    assert MALLOC_TRIM is not None, "malloc_trim needs glibc"
    before = resident_bytes()
    started = time.perf_counter()
    MALLOC_TRIM(0)
    seconds = time.perf_counter() - started
    return Trim(before, resident_bytes(), seconds)


@attrs.define(eq=False)
class MemoryTrimmer:
    """Samples the connection counts and the RSS every ``policy.interval``; collects and trims
    when a burst is over.

    ``accepted`` and ``open_now`` read the server's running total of accepted connections and
    the number open now. ``trims`` lists every trim done, newest last (the last 16).
    """

    policy: TrimPolicy
    accepted: Callable[[], int]
    open_now: Callable[[], int]
    trims: list[Trim] = attrs.field(factory=list, init=False)
    trimmed: trio.Event = attrs.field(factory=trio.Event, init=False)
    """Set after each trim (a new event each time): tests and benches wait on it."""

    async def run(self) -> None:
        """Sample, and collect and trim when due, until cancelled (glibc only)."""
        schedule = TrimSchedule(self.policy)
        while True:
            await trio.sleep(self.policy.interval)
            if schedule.observe(self.accepted(), self.open_now(), resident_bytes()):
                started = time.perf_counter()
                gc.collect()
                collected = time.perf_counter() - started
                trim = await trio.to_thread.run_sync(trim_now)
                schedule.trimmed(trim.rss_after)
                self._record(attrs.evolve(trim, gc_seconds=collected))

    def _record(self, trim: Trim) -> None:
        self.trims = [*self.trims[-15:], trim]
        logger.info(
            "memory trim: RSS %.1f -> %.1f MB (gc.collect %.1f ms, malloc_trim %.1f ms)",
            trim.rss_before / 1e6,
            trim.rss_after / 1e6,
            trim.gc_seconds * 1e3,
            trim.seconds * 1e3,
        )
        done, self.trimmed = self.trimmed, trio.Event()
        done.set()
