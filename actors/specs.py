"""Child specs and restart arithmetic: plain values and functions, testable without trio."""

from __future__ import annotations

import enum
import math
from collections import deque
from typing import Any

import attrs

from .actor import ActorFunction
from .mailbox import DEFAULT_CAPACITY, MailboxPolicy
from .reasons import ExitReason

DEFAULT_SHUTDOWN = 5.0
"""Seconds a child gets to stop after a shutdown signal before it is killed."""

DEFAULT_MAX_RESTARTS = 3
DEFAULT_PERIOD = 5.0
"""OTP's default restart intensity: more than 3 restarts in 5 seconds is too many."""


class Restart(enum.Enum):
    """When a supervisor restarts a child that ended (OTP's restart types)."""

    PERMANENT = "permanent"
    """Always."""
    TRANSIENT = "transient"
    """Only after an abnormal exit (not normal, not shutdown)."""
    TEMPORARY = "temporary"
    """Never; the child is forgotten when it ends."""


class Strategy(enum.Enum):
    """What else a supervisor restarts when one child must be restarted."""

    ONE_FOR_ONE = "one_for_one"
    """Only that child."""
    ONE_FOR_ALL = "one_for_all"
    """Every child: the others are stopped (in reverse order), then all start again."""
    REST_FOR_ONE = "rest_for_one"
    """That child and every child started after it."""


@attrs.frozen
class ChildSpec:
    """How a supervisor starts, restarts and stops one child actor."""

    id: str
    start: ActorFunction
    args: tuple[Any, ...] = ()
    restart: Restart = Restart.PERMANENT
    shutdown: float = DEFAULT_SHUTDOWN
    """Seconds a child gets to stop after a shutdown signal before it is killed."""
    name: str | None = None
    """Register the child under this name (each restart registers it again)."""
    capacity: int = DEFAULT_CAPACITY
    overflow: MailboxPolicy = MailboxPolicy.DROP_NEWEST
    trap_exits: bool = False
    kind: str | None = None

    def __attrs_post_init__(self) -> None:
        if not self.shutdown >= 0:
            raise ValueError(f"child {self.id!r}: shutdown must be >= 0 seconds or math.inf")


def should_restart(restart: Restart, reason: ExitReason) -> bool:
    """Whether a child of this restart type is restarted after ending with ``reason``."""
    if restart is Restart.PERMANENT:
        return True
    if restart is Restart.TRANSIENT:
        return reason.is_abnormal
    return False


@attrs.define
class RestartIntensity:
    """OTP's restart intensity: more than ``max_restarts`` in ``period`` seconds is too many."""

    max_restarts: int = DEFAULT_MAX_RESTARTS
    period: float = DEFAULT_PERIOD
    _restarts: deque[float] = attrs.field(factory=deque, init=False)

    def __attrs_post_init__(self) -> None:
        if self.max_restarts < 0 or not self.period > 0 or math.isinf(self.period):
            raise ValueError("restart intensity needs max_restarts >= 0 and a finite period > 0")

    def allow(self, now: float) -> bool:
        """Record a restart at ``now``; False when it is one too many for the period."""
        self._restarts.append(now)
        while self._restarts and self._restarts[0] <= now - self.period:
            self._restarts.popleft()
        return len(self._restarts) <= self.max_restarts

    def describe(self) -> str:
        """The limit, for error messages."""
        return f"{self.max_restarts} restarts in {self.period:g} s"
