"""What waits to be written to one client, bounded in frames and in bytes (no I/O here)."""

from __future__ import annotations

import itertools
from collections import deque
from typing import TypeAlias

Chunk: TypeAlias = bytes | memoryview
"""A queued frame, or the end of one partly written (a view: no copy of what is left)."""


class Outbox:
    """Encoded frames (or frame tails) not yet written, oldest first.

    Full means ``capacity`` frames, or ``max_bytes`` of them: one frame is always taken into
    an empty outbox, whatever its size, so a large message can still go out.
    """

    __slots__ = ("capacity", "max_bytes", "size", "_chunks", "_begun")

    def __init__(self, capacity: int, max_bytes: int) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.size = 0
        """Bytes queued."""
        self._chunks: deque[Chunk] = deque()
        self._begun = False  # the oldest chunk is the end of a frame partly written

    def __len__(self) -> int:
        return len(self._chunks)

    def has_room_for(self, size: int) -> bool:
        """Whether a frame of ``size`` bytes fits now."""
        if not self._chunks:
            return True
        return len(self._chunks) < self.capacity and self.size + size <= self.max_bytes

    def append(self, data: bytes) -> None:
        """Queue ``data`` (the caller checked ``has_room_for``, or must send it regardless)."""
        self._chunks.append(data)
        self.size += len(data)

    def peek(self, limit: int) -> Chunk:
        """Up to ``limit`` bytes of whole chunks (at least one), joined for one write and left
        queued: the write may take only part of it (``discard`` then drops what it took)."""
        chunks = self._chunks
        count = self._chunks_within(limit)
        return chunks[0] if count == 1 else b"".join(itertools.islice(chunks, count))

    def discard(self, size: int) -> None:
        """Drop the first ``size`` bytes, written: whole chunks, then the written head of the
        next one (its end stays, as a frame begun)."""
        self.size -= size
        chunks = self._chunks
        while size and size >= len(chunks[0]):
            size -= len(chunks.popleft())
            self._begun = False
        if size:
            chunks[0] = memoryview(chunks[0])[size:]
            self._begun = True

    def _chunks_within(self, limit: int) -> int:
        """How many chunks from the oldest fit in ``limit`` bytes (at least one)."""
        total, count = len(self._chunks[0]), 1
        for chunk in itertools.islice(self._chunks, 1, None):
            total += len(chunk)
            if total > limit:
                break
            count += 1
        return count

    def clear(self) -> int:
        """Drop every frame not begun; return how many were dropped.

        The end of a frame partly written stays: without it the client would read the next
        frame (a close) as that frame's payload.
        """
        chunks = self._chunks
        begun = chunks.popleft() if self._begun else None
        dropped = len(chunks)
        self.size -= sum(len(chunk) for chunk in chunks)
        chunks.clear()
        if begun is not None:
            chunks.append(begun)
        return dropped
