"""permessage-deflate (RFC 7692) inflation of the client's messages, in bounded steps, under
one memory budget shared by every connection of a server.

Each compressed message is inflated ``INFLATE_STEP`` bytes at a time (zlib's ``max_length``),
so one message cannot hold the event loop however far it expands; every inflated byte held
for an unfinished message is charged to the server's ``InflateBudget`` until the message is
handed over or dropped. No socket here: the session calls ``Inflater.step`` between frames.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Final

import attrs

INFLATE_STEP: Final = 256 * 1024
"""Most inflated bytes one step makes: about a millisecond of zlib, so the loop moves on."""

DEFAULT_INFLATE_BUDGET: Final = 128 * 2**20
"""Inflated bytes all unfinished compressed messages of a server may hold together."""

_EMPTY_BLOCK: Final = b"\x00\x00\xff\xff"
"""RFC 7692 §7.2.2: the tail the sender removed from each message, put back to inflate it."""


class InflateBudget:
    """Bytes that inflated, unfinished messages may hold across every connection of a server."""

    __slots__ = ("limit", "held")

    def __init__(self, limit: int = DEFAULT_INFLATE_BUDGET) -> None:
        self.limit = limit
        self.held = 0
        """Inflated bytes held now, by every connection's unfinished messages together."""

    def take(self, size: int) -> bool:
        """Charge ``size`` bytes if they fit in what is left; False (nothing charged) if not."""
        if self.held + size > self.limit:
            return False
        self.held += size
        return True

    def give_back(self, size: int) -> None:
        self.held -= size


class Charge:
    """What one message holds of a budget; given back when the message is done or dropped
    (on every path: the session drops the message, or the whole session is collected)."""

    __slots__ = ("budget", "size")

    def __init__(self, budget: InflateBudget) -> None:
        self.budget = budget
        self.size = 0

    def take(self, size: int) -> bool:
        """Charge ``size`` more bytes to the budget; False if the budget has no room."""
        if not self.budget.take(size):
            return False
        self.size += size
        return True

    def __del__(self) -> None:
        self.budget.give_back(self.size)


@attrs.frozen
class InflateSettings:
    """The client's side of a negotiated permessage-deflate: how to inflate what it sends."""

    window_bits: int = 15
    """``client_max_window_bits`` (RFC 7692 §7.1.2.2); 15 when not negotiated."""
    no_context_takeover: bool = False
    """``client_no_context_takeover`` (§7.1.1.2): each message is inflated afresh."""

    @classmethod
    def from_response(cls, params: Iterable[tuple[str, str | None]]) -> InflateSettings:
        """The settings a server's ``Sec-WebSocket-Extensions`` response parameters agree on."""
        settings = dict(params)
        bits = settings.get("client_max_window_bits")
        return cls(
            window_bits=int(bits) if bits else 15,
            no_context_takeover="client_no_context_takeover" in settings,
        )


class Inflater:
    """One connection's decompressor: a message's frames are fed in, inflated bytes come out
    a step at a time. ``pending`` is True while fed bytes remain to inflate."""

    __slots__ = ("settings", "budget", "_decompressor", "_input", "_final", "_full")

    def __init__(self, settings: InflateSettings, budget: InflateBudget) -> None:
        self.settings = settings
        self.budget = budget
        self._decompressor = zlib.decompressobj(wbits=-settings.window_bits)
        self._input = b""
        self._final = False
        self._full = False  # the last step filled its output: zlib may hold more

    @property
    def pending(self) -> bool:
        """Whether fed bytes may still give inflated bytes (call ``step``)."""
        return bool(self._input) or self._full

    @property
    def done(self) -> bool:
        """Whether the message's last frame has been inflated whole."""
        return self._final and not self.pending

    def start_message(self) -> None:
        """A new compressed message begins (fresh context if the client asked for none)."""
        if self.settings.no_context_takeover:
            self._decompressor = zlib.decompressobj(wbits=-self.settings.window_bits)

    def feed(self, payload: bytes, *, final: bool) -> None:
        """One frame's compressed payload (``final``: the message's last frame)."""
        self._input = payload + _EMPTY_BLOCK if final else payload
        self._final = final

    def step(self, limit: int = INFLATE_STEP) -> bytes:
        """At most ``limit`` inflated bytes; raises zlib.error for data that is not deflate."""
        inflated = self._decompressor.decompress(self._input, limit)
        self._input = self._decompressor.unconsumed_tail
        self._full = len(inflated) == limit
        return inflated

    def drop(self) -> None:
        """Forget what was fed (the message is abandoned; no later message is inflated)."""
        self._input = b""
        self._full = False
