"""What both sides of the test kit share: the pushes a client got, and assertions on them."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

import trio

from ..commands import Binary, Text

Match: TypeAlias = Text | Binary | str | bytes | Mapping[str, Any] | Callable[[Text | Binary], bool]
"""What ``assert_push``/``refute_push`` look for: a ``Text``/``Binary`` (equal), a ``str`` (a
text push equal to it), ``bytes`` (a binary one), a mapping (a JSON object in a text push
holding those keys with those values), or a predicate on the push."""

ASSERT_TIMEOUT = 5.0
"""Default seconds ``receive``/``assert_push``/``assert_closed`` wait (virtual ones under a
MockClock: a failure costs no real time)."""
REFUTE_TIMEOUT = 0.1
"""Default seconds ``refute_push`` watches for a push (ExUnit's ``refute_receive`` default)."""


class Pushes:
    """Pushes received and not yet taken, and the assertions on them (``Driven`` and
    ``Client`` fill it)."""

    def __init__(self) -> None:
        self._queued: list[Text | Binary] = []

    async def _more(self) -> bool:
        """Wait until one more push is queued; False once none can come (the server closed)."""
        raise NotImplementedError

    def _closed_as(self) -> str:
        raise NotImplementedError

    async def receive(self, timeout: float = ASSERT_TIMEOUT) -> Text | Binary:
        """The next push (``Text`` or ``Binary``), waiting up to ``timeout`` seconds."""
        return await self.assert_push(None, timeout)

    async def receive_json(self, timeout: float = ASSERT_TIMEOUT) -> Any:
        """The next push, a text frame, decoded as JSON."""
        push = await self.receive(timeout)
        assert isinstance(push, Text), f"expected a JSON text frame, got {push!r}"
        return json.loads(push.data)

    async def assert_push(
        self, match: Match | None = None, timeout: float = ASSERT_TIMEOUT
    ) -> Text | Binary:
        """The first push matching ``match`` (any push if None), taken from the queue.

        Pushes that do not match stay queued for later assertions. Raises AssertionError,
        listing what did arrive, if none matches within ``timeout`` seconds.
        """
        with trio.move_on_after(timeout):
            while True:
                for index, push in enumerate(self._queued):
                    if _matches(match, push):
                        return self._queued.pop(index)
                if not await self._more():
                    break
        wanted = "a push" if match is None else f"a push matching {match!r}"
        why = f"the connection closed ({self._closed_as()})" if self._closed_as() else "timeout"
        raise AssertionError(f"{wanted} within {timeout} s: {why}; queued: {self._queued!r}")

    async def refute_push(
        self, match: Match | None = None, timeout: float = REFUTE_TIMEOUT
    ) -> None:
        """Raise AssertionError if a push (matching ``match``, if given) is queued or arrives
        within ``timeout`` seconds."""
        with trio.move_on_after(timeout):
            while not any(_matches(match, push) for push in self._queued):
                if not await self._more():
                    break
        found = [push for push in self._queued if _matches(match, push)]
        assert not found, f"expected no push within {timeout} s, got {found!r}"


def _matches(match: Match | None, push: Text | Binary) -> bool:
    if match is None:
        return True
    if isinstance(match, (Text, Binary)):
        return push == match
    if isinstance(match, str):
        return push == Text(match)
    if isinstance(match, bytes):
        return push == Binary(match)
    if isinstance(match, Mapping):
        if not isinstance(push, Text):
            return False
        try:
            value = json.loads(push.data)
        except ValueError:
            return False
        return isinstance(value, dict) and all(
            key in value and value[key] == wanted for key, wanted in match.items()
        )
    return bool(match(push))
