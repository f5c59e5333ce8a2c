"""Presence for the cluster tests: a subscriber that records diffs and waits for a view."""

from __future__ import annotations

from collections.abc import Callable

import trio

import actors
from actors.presence import PresenceDiff, PresenceSettings, PresenceTracker

INTERVAL = 0.05
SETTINGS = PresenceSettings(interval=INTERVAL, clock_period=0.1)
"""Short intervals and clocks, to go with the cluster tests' half-second lease."""


class Watcher:
    """An actor subscribed to a topic on one node: its diffs, and waits on that node's view."""

    def __init__(self, tracker: PresenceTracker, topic: str) -> None:
        self.tracker = tracker
        self.topic = topic
        self.diffs: list[PresenceDiff] = []
        self._changed = trio.Event()

    async def __call__(self, actor: actors.Actor) -> None:
        self.tracker.subscribe(self.topic, actor.address)
        async for message in actor:
            if isinstance(message, PresenceDiff):
                self.diffs.append(message)
                self._changed.set()
                self._changed = trio.Event()

    def keys(self) -> set[str]:
        """The keys present under the topic, as the watcher's node sees them."""
        return set(self.tracker.table.listing(self.topic))

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Wait until ``condition()`` holds, checking it after each diff."""
        while not condition():
            await self._changed.wait()
