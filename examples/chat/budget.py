"""The history budget: how many bytes of history all rooms hold, and which empty rooms go first.

Plain bookkeeping, no I/O. Each room tells the budget its history's size as it changes, that
it became empty (``park``: it stays for its empty-room TTL, holding its history) or occupied
again (``unpark``), and that it stopped (``forget``). Over ``limit``, ``evictions`` names the
parked rooms to stop, least recently used first; what is still over after every parked room is
on its way out (``excess``) comes off the history of the room that is speaking. So the whole
stays bounded, however many rooms one client fills and leaves.
"""

from __future__ import annotations

import attrs


@attrs.define
class HistoryBudget:
    """Bytes of history per room, and the empty rooms (``parked``) in least recently used order."""

    limit: int
    """The most history, in bytes, all rooms together keep."""
    total: int = attrs.field(default=0, init=False)
    _sizes: dict[str, int] = attrs.field(factory=dict, init=False)
    _parked: dict[str, None] = attrs.field(factory=dict, init=False)
    """Insertion order is use order: the first was parked longest ago."""
    _evicting: set[str] = attrs.field(factory=set, init=False)
    """Rooms taken from ``_parked`` and told to stop, whose bytes go as soon as they do."""
    _evicting_bytes: int = attrs.field(default=0, init=False)

    def update(self, room: str, size: int) -> None:
        """``room`` now holds ``size`` bytes of history."""
        change = size - self._sizes.get(room, 0)
        self.total += change
        if room in self._evicting:
            self._evicting_bytes += change
        if size:
            self._sizes[room] = size
        else:
            self._sizes.pop(room, None)

    def park(self, room: str) -> None:
        """``room`` became empty and keeps its history: the most recently used parked room."""
        self.unpark(room)
        self._parked[room] = None

    def unpark(self, room: str) -> None:
        """``room`` has members again (or will not stop): it is no one's to evict."""
        self._parked.pop(room, None)
        if room in self._evicting:
            self._evicting.remove(room)
            self._evicting_bytes -= self.size(room)

    def forget(self, room: str) -> None:
        """``room`` stopped: its history is gone."""
        self.update(room, 0)
        self.unpark(room)

    def evictions(self) -> list[str]:
        """Parked rooms to stop, least recently used first, until the rest fits the limit."""
        chosen: list[str] = []
        while self._pending() > self.limit and (room := self.evict_one()) is not None:
            chosen.append(room)
        return chosen

    def evict_one(self) -> str | None:
        """The least recently used parked room not yet told to stop (now marked), or None."""
        room = next(iter(self._parked), None)
        if room is not None:
            del self._parked[room]
            self._evicting.add(room)
            self._evicting_bytes += self.size(room)
        return room

    def excess(self) -> int:
        """Bytes over the limit once every room told to stop has: what speakers must shed."""
        return max(0, self._pending() - self.limit)

    @property
    def evicting(self) -> int:
        """How many rooms were told to stop and have not yet."""
        return len(self._evicting)

    def parked(self) -> list[str]:
        """The parked rooms not yet told to stop, least recently used first."""
        return list(self._parked)

    def size(self, room: str) -> int:
        """The bytes of history ``room`` holds."""
        return self._sizes.get(room, 0)

    def _pending(self) -> int:
        return self.total - self._evicting_bytes
