"""Request and reply (Erlang's gen_server:call): ``call`` sends a request and waits for its answer.

Each call opens a port, an address of the caller's node that is no actor's (as Erlang's
process aliases): the callee answers to it, and it hands the answer straight to the waiting
task. The caller also monitors the callee from that port, so a callee that ends, or whose node
goes away, makes the call raise at once with the exit reason rather than at the timeout. When
the call returns, by answer, exit or timeout, the port closes: a late answer finds no port and
is dropped (a dead letter), never left in the caller's mailbox. The caller need not be an actor.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import attrs
import trio

from . import wire_codec
from .address import Address
from .errors import ActorError, MailboxFull, RemoteError
from .messages import REVOKED, Down, MonitorRef, TimerRef, unwrap

if TYPE_CHECKING:
    from .node import Destination, Node
from .reasons import NOCONNECTION, NOPROC, ExitReason

logger = logging.getLogger("corral.actors")

DEFAULT_CALL_TIMEOUT = 5.0
"""Seconds ``call`` waits for an answer unless told otherwise (OTP's default)."""


@wire_codec.wire_type
@attrs.frozen
class Caller:
    """Who waits for an answer (Erlang's From): pass it to ``reply`` to answer later."""

    reply_to: Address
    """The caller's port: answers sent there reach the waiting call, and only while it waits."""


@wire_codec.wire_type
@attrs.frozen
class Call(Caller):
    """A request in the callee's mailbox: a behaviour's loop hands ``request`` to
    ``handle_call`` with the call itself as the ``Caller`` (one object per call, not two)."""

    request: Any


@wire_codec.wire_type
@attrs.frozen
class Cast:
    """A message sent with ``cast`` (a behaviour's loop hands it to ``handle_cast``)."""

    message: Any


@wire_codec.wire_type
@attrs.frozen
class _Unsendable:
    """Sent in place of an answer that cannot travel to the caller's node (why, as text)."""

    detail: str


class CallTimeout(ActorError, TimeoutError):
    """No answer came within the call's timeout (a late one will be dropped)."""

    def __init__(self, callee: Address, timeout: float) -> None:
        self.callee = callee
        self.timeout = timeout
        super().__init__(f"{callee} did not answer within {timeout:g} s")


class CalleeExited(ActorError):
    """The callee ended (or its node went away) before it answered; ``reason`` says why."""

    def __init__(self, callee: Address, reason: ExitReason) -> None:
        self.callee = callee
        self.reason = reason
        super().__init__(f"{callee} ended before it answered: {reason}")


async def call(node: Node, dest: Destination, request: Any, timeout: float) -> Any:
    """Send ``request`` to ``dest`` from ``node`` and return the answer (``actors.call``)."""
    callee = dest if type(dest) is Address else node.resolve(dest)
    pending = _Pending()
    port = node.open_port(pending)
    try:
        pending.monitor = _monitor(node, port, callee, pending)
        if not node.send(callee, Call(port, request)) and pending.outcome is None:
            _refused(node, callee, pending)
        return await pending.answer(node, callee, timeout)
    finally:
        node.close_port(port)
        _demonitor(node, callee, pending.monitor)


def reply(node: Node, caller: Caller, answer: Any) -> None:
    """Send ``answer`` to ``caller`` from ``node`` (``actors.reply``); an answer that cannot
    travel is logged, and the caller gets RemoteError instead."""
    try:
        node.send(caller.reply_to, answer)
    except wire_codec.NotPortable as exc:
        logger.error("an answer to %s cannot travel: %s", caller.reply_to, exc)
        node.send(caller.reply_to, _Unsendable(str(exc)))


class _Pending:
    """The port of one call: keeps the first answer or the callee's Down, wakes the caller."""

    __slots__ = ("outcome", "monitor", "_task")

    def __init__(self) -> None:
        self.outcome: tuple[bool, Any] | None = None
        """``(True, answer)`` or ``(False, exit reason)``."""
        self.monitor: MonitorRef | None = None
        self._task: trio.lowlevel.Task | None = None

    def deliver(self, msg: Any) -> None:
        if self.outcome is None:
            self._settle((True, msg))

    def notify(self, msg: Any) -> None:
        down = unwrap(msg)
        if down is not REVOKED and type(down) is Down and self.outcome is None:
            self._settle((False, down.reason))

    def down(self, reason: ExitReason) -> None:
        """The callee could not be monitored: it has ended already."""
        self._settle((False, reason))

    def _settle(self, outcome: tuple[bool, Any]) -> None:
        self.outcome = outcome
        task, self._task = self._task, None
        if task is not None:
            trio.lowlevel.reschedule(task)

    def _abort(self, _: Any) -> trio.lowlevel.Abort:
        self._task = None
        return trio.lowlevel.Abort.SUCCEEDED

    def expire(self) -> None:
        """The call's timeout passed: wake the caller with no outcome."""
        task, self._task = self._task, None
        if task is not None:
            trio.lowlevel.reschedule(task)

    async def answer(self, node: Node, callee: Address, timeout: float) -> Any:
        """Wait for the outcome (the node's timer service keeps the timeout: cheaper than a
        cancel scope with a deadline); return the answer or raise what ended the call."""
        if self.outcome is None:
            timer = TimerRef()
            if timeout != math.inf:
                node.timers.schedule(timer, timeout, self.expire)
            self._task = trio.lowlevel.current_task()
            try:
                await trio.lowlevel.wait_task_rescheduled(self._abort)
            finally:
                node.timers.discard(timer)
        else:
            await trio.lowlevel.checkpoint()
        if self.outcome is None:
            raise CallTimeout(callee, timeout)
        answered, value = self.outcome
        if not answered:
            raise CalleeExited(callee, value)
        if type(value) is _Unsendable:
            raise RemoteError("NotPortable", value.detail)
        return value


def _monitor(node: Node, port: Address, callee: Address, pending: _Pending) -> MonitorRef | None:
    """Monitor ``callee`` from ``port``; an ended local callee settles the call at once."""
    if callee.node != node.name:
        return node.monitor_remote(port, callee)
    actor = node.actor(callee)
    if actor is None:
        pending.down(NOPROC)
        return None
    ref = MonitorRef()
    actor.add_watcher(ref, port)
    return ref


def _demonitor(node: Node, callee: Address, ref: MonitorRef | None) -> None:
    if ref is None:
        return
    ref.revoked = True
    if callee.node != node.name:
        node.demonitor_remote(ref)
        return
    actor = node.actor(callee)
    if actor is not None:
        actor.drop_watcher(ref)


def _refused(node: Node, callee: Address, pending: _Pending) -> None:
    """The request did not go: a full local mailbox raises; another node that cannot be
    reached settles the call as its monitor would (noconnection)."""
    if callee.node != node.name:
        pending.down(NOCONNECTION)
        return
    actor = node.actor(callee)
    capacity = actor.mailbox.capacity if actor is not None else 0
    raise MailboxFull(callee, capacity)
