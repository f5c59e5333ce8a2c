"""Messages the runtime itself delivers to actors: timer timeouts, monitor downs, link exits."""

from __future__ import annotations

import itertools
from typing import Any

import attrs

from .address import Address
from .reasons import ExitReason

_ref_serials = itertools.count(1)


@attrs.define(eq=False, repr=False)
class Ref:
    """An opaque, unique reference (Erlang's make_ref) that can be revoked.

    A message tied to a revoked reference is never handed to the actor, even when it
    is already waiting in the mailbox: this is how cancel_timer and demonitor keep
    their promise.
    """

    serial: int = attrs.field(factory=lambda: next(_ref_serials), init=False)
    revoked: bool = attrs.field(default=False, init=False)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} #{self.serial}>"


class TimerRef(Ref):
    """Names a timer started by start_timer or send_after."""


class MonitorRef(Ref):
    """Names a monitor set up by monitor()."""


@attrs.frozen
class Timeout:
    """Delivered to an actor by its own ``start_timer(seconds, msg)``."""

    ref: TimerRef
    msg: Any


@attrs.frozen
class Down:
    """Delivered to a monitoring actor when the monitored one ends."""

    ref: MonitorRef
    address: Address
    reason: ExitReason


@attrs.frozen
class Exit:
    """Delivered to an actor that traps exits, when a linked actor ends or someone calls exit()."""

    address: Address | None
    reason: ExitReason


@attrs.frozen
class Revocable:
    """Mailbox envelope: ``payload`` is delivered unless ``ref`` was revoked meanwhile."""

    ref: Ref
    payload: Any


REVOKED: Any = object()
"""What ``unwrap`` gives for an envelope whose reference was revoked: drop the message."""


def unwrap(item: Any) -> Any:
    """The message inside a mailbox item: its payload, or REVOKED if it was cancelled since."""
    if type(item) is Revocable:
        return REVOKED if item.ref.revoked else item.payload
    return item
