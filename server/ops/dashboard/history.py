"""The dashboard's memory: one sample of the server's counters a second, the last minutes.

A newly opened page gets the whole ring at once, so its charts start with history. Samples
hold running totals (as the metrics do); ``points`` turns consecutive samples into rates.
``history_of(node)`` is the one history of a node's server; it is filled by the sampler actor
(``sample_every_second``) when the app runs one, else by the pages' own ticks while any is open.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from typing import Any

import attrs
import trio

import actors
from actors import Node

from ...engine.per_node import PerNode
from ..stats import ServerStats, stats_of

SAMPLE_EVERY = 1.0
"""Seconds between two samples."""
KEPT = 300
"""Samples kept: five minutes at one a second."""


@attrs.frozen
class Sample:
    """The server's running totals at one moment (``at``: wall-clock seconds)."""

    seq: int
    at: float
    connections: int
    frames_in: int
    frames_out: int
    dropped: int
    """Messages dropped by full mailboxes plus frames dropped by full outboxes."""
    blocked: int
    closes: tuple[tuple[str, int], ...]
    """Connections closed so far, by close code."""


def take_sample(node: Node, stats: ServerStats, seq: int, at: float) -> Sample:
    """Read the totals of the server running on ``node`` now."""
    traffic = stats.traffic()
    closes: Counter[str] = Counter()
    for key, count in stats.closed.items():
        closes[key.code] += count
    return Sample(
        seq=seq,
        at=at,
        connections=len(stats.open),
        frames_in=traffic.frames_in,
        frames_out=traffic.frames_out,
        dropped=traffic.outbox_dropped + stats.mailbox_dropped_total(node.census().with_drops),
        blocked=sum(stats.blocked.values()),
        closes=tuple(sorted(closes.items())),
    )


@attrs.define(eq=False)
class History:
    """The last ``KEPT`` samples, oldest first, each numbered (``seq``) from 0."""

    samples: deque[Sample] = attrs.field(factory=lambda: deque(maxlen=KEPT))

    @property
    def last_seq(self) -> int:
        """The newest sample's number (-1 before the first)."""
        return self.samples[-1].seq if self.samples else -1

    def is_due(self, at: float) -> bool:
        """Whether a sample taken at ``at`` would come soon enough after the last one (a
        tenth of the period early is allowed: two tickers a second must not make two)."""
        return not self.samples or at - self.samples[-1].at >= 0.9 * SAMPLE_EVERY

    def sample_if_due(self, node: Node, at: float) -> None:
        """Add a sample of ``node``'s server taken at ``at``, unless one was taken lately."""
        if self.is_due(at):
            self.samples.append(take_sample(node, stats_of(node), self.last_seq + 1, at))

    def points(self, since: int) -> list[dict[str, Any]]:
        """Chart points after sample ``since``: each sample with the rates since the one
        before it (the oldest kept sample has none before it, so gives no point)."""
        points = []
        samples = list(self.samples)
        for before, sample in zip(samples, samples[1:], strict=False):
            if sample.seq > since:
                points.append(_point(before, sample))
        return points


def _point(before: Sample, sample: Sample) -> dict[str, Any]:
    elapsed = max(sample.at - before.at, 1e-9)
    closed_before = dict(before.closes)
    return {
        "seq": sample.seq,
        "at": round(sample.at, 3),
        "connections": sample.connections,
        "in_per_s": round((sample.frames_in - before.frames_in) / elapsed, 1),
        "out_per_s": round((sample.frames_out - before.frames_out) / elapsed, 1),
        "dropped": sample.dropped - before.dropped,
        "blocked": sample.blocked - before.blocked,
        "closes": {
            code: count - closed_before.get(code, 0)
            for code, count in sample.closes
            if count != closed_before.get(code, 0)
        },
    }


history_of = PerNode(History)
"""The history of the server running on ``node`` (made on first use)."""


async def sample_every_second(actor: actors.Actor) -> None:
    """An actor body: keep the node's history filled, whether or not a page is open."""
    history = history_of(actor.node)
    while True:
        history.sample_if_due(actor.node, time.time())
        await trio.sleep(SAMPLE_EVERY)
