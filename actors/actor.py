"""An actor: a trio task with a mailbox, an address, timers, monitors and links.

The actor's function receives its ``Actor`` handle (``async def fn(actor, *args)``):
everything it may do to itself goes through that handle, as Erlang code uses ``self()``.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVarTuple

import trio

from .address import Address
from .errors import ActorExit, NotInActor
from .mailbox import Mailbox, MailboxPolicy
from .messages import Down, Exit, MonitorRef, Revocable, Timeout, TimerRef
from .reasons import KILLED, MAILBOX_OVERFLOW, NOPROC, NORMAL, SHUTDOWN, Crash, ExitReason

if TYPE_CHECKING:
    from .node import Destination, Node

ActorFunction = Callable[..., Awaitable[None]]

ActorArgs = TypeVarTuple("ActorArgs")
"""The extra arguments of an actor's function, as ``spawn`` checks them against it."""
"""``async def fn(actor: Actor, *args) -> None``: the body of an actor."""

logger = logging.getLogger("corral.actors")

_current_actor: contextvars.ContextVar[Actor] = contextvars.ContextVar("corral_actor")


def actor_of_task(task: trio.lowlevel.Task) -> Actor | None:
    """The actor ``task`` runs, if it runs one (read from the task's own context: safe from
    another thread, for a watchdog naming who holds the loop)."""
    return task.context.get(_current_actor)


def current_actor() -> Actor:
    """The actor whose task is running this code (NotInActor elsewhere)."""
    try:
        return _current_actor.get()
    except LookupError:
        raise NotInActor(
            "this needs to run inside an actor (timers, monitors, links and self "
            "belong to one); spawn an actor, or use the node's methods"
        ) from None


class Actor:
    """The running actor's handle on itself: receive, timers, monitors, links, exit."""

    # Slots, and sets made on first use: a server keeps one actor per connection.
    __slots__ = (
        "node",
        "address",
        "kind",
        "trap_exits",
        "started_at",
        "mailbox",
        "exit_reason",
        "_scope",
        "_stop_reason",
        "_finished",
        "_links",
        "_watchers",
        "_watching",
        "_timers",
        "__weakref__",
    )

    def __init__(
        self,
        node: Node,
        address: Address,
        *,
        capacity: int,
        overflow: MailboxPolicy,
        kind: str,
        trap_exits: bool,
    ) -> None:
        self.node = node
        self.address = address
        self.kind = kind
        self.trap_exits = trap_exits
        self.started_at = time.time()
        self.mailbox = Mailbox(address, capacity, overflow, self._overflowed)
        self.exit_reason: ExitReason | None = None
        self._scope = trio.CancelScope()
        self._stop_reason: ExitReason | None = None
        self._finished: trio.Event | None = None  # made by the first wait()
        self._links: set[Address] | None = None
        # Made on first use: most actors (every connection) never monitor or get monitored.
        self._watchers: dict[MonitorRef, Address] | None = None
        self._watching: dict[MonitorRef, Address] | None = None
        self._timers: set[TimerRef] | None = None

    def __repr__(self) -> str:
        return f"<Actor {self.address} kind={self.kind}>"

    # ---- messages -------------------------------------------------------------------

    async def receive(self) -> Any:
        """Wait for the next message (one task at a time: another raises BusyResourceError)."""
        return await self.mailbox.get()

    def receive_nowait(self) -> Any:
        """The next message if one is waiting, else raise trio.WouldBlock."""
        return self.mailbox.get_nowait()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[Any]:
        while True:
            yield await self.mailbox.get()

    def run_inline(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Call synchronous ``fn(*args)`` as this actor, from the calling task.

        For an actor that is idle and would otherwise be woken to do this one step (a
        connection handing a message to its handler): inside ``fn``, ``current_actor()``
        and everything built on it (timers, monitors, self) mean this actor.
        """
        token = _current_actor.set(self)
        try:
            return fn(*args)
        finally:
            _current_actor.reset(token)

    def send(self, dest: Destination, msg: Any) -> bool:
        """Send ``msg`` to an address or registered name (see Node.send)."""
        return self.node.send(dest, msg)

    def exit(self, reason: ExitReason = NORMAL) -> NoReturn:
        """Stop this actor now with ``reason``."""
        raise ActorExit(reason)

    # ---- timers ---------------------------------------------------------------------

    def start_timer(self, seconds: float, msg: Any) -> TimerRef:
        """Deliver ``Timeout(ref, msg)`` to this actor after ``seconds``."""
        ref = TimerRef()
        self._schedule(ref, seconds, self.address, lambda: Timeout(ref, msg))
        return ref

    def send_after(self, seconds: float, dest: Destination, msg: Any) -> TimerRef:
        """Deliver ``msg`` as is to ``dest`` after ``seconds``; the timer dies with this actor."""
        ref = TimerRef()
        self._schedule(ref, seconds, dest, lambda: msg)
        return ref

    def cancel_timer(self, ref: TimerRef) -> float | None:
        """Cancel a timer: returns the seconds that were left, or None if it had fired.

        Either way its message is never received after this returns, even if it was
        already waiting in the mailbox.
        """
        if self._timers is not None:
            self._timers.discard(ref)
        return self.node.timers.cancel(ref)

    def read_timer(self, ref: TimerRef) -> float | None:
        """Seconds left on a timer, or None if it fired or was cancelled."""
        return self.node.timers.remaining(ref)

    def _schedule(
        self, ref: TimerRef, seconds: float, dest: Destination, make: Callable[[], Any]
    ) -> None:
        def deliver() -> None:
            if self._timers is not None:
                self._timers.discard(ref)
            self.node.notify(dest, Revocable(ref, make()))

        self.node.timers.schedule(ref, seconds, deliver)
        if self._timers is None:
            self._timers = set()
        self._timers.add(ref)

    # ---- monitors and links -----------------------------------------------------------

    def monitor(self, target: Address) -> MonitorRef:
        """Be told with ``Down(ref, target, reason)`` when ``target`` ends.

        If it has already ended, ``Down`` with reason noproc arrives at once.
        """
        if target.node != self.node.name:
            return self.node.monitor_remote(self.address, target)
        ref = MonitorRef()
        other = self.node.actor(target)
        if other is None:
            self.mailbox.put_system(Revocable(ref, Down(ref, target, NOPROC)))
            return ref
        other.add_watcher(ref, self.address)
        if self._watching is None:
            self._watching = {}
        self._watching[ref] = target
        return ref

    def demonitor(self, ref: MonitorRef) -> None:
        """Remove a monitor; a Down it already queued is never received."""
        ref.revoked = True
        target = self._watching.pop(ref, None) if self._watching else None
        if target is None:
            self.node.demonitor_remote(ref)
            return
        other = self.node.actor(target)
        if other is not None:
            other.drop_watcher(ref)

    def add_watcher(self, ref: MonitorRef, watcher: Address) -> None:
        """Note that ``watcher`` monitors this actor under ``ref`` (bookkeeping only: ``monitor``
        is what actor code calls; ``call`` uses this for its reply port, which is no actor)."""
        if self._watchers is None:
            self._watchers = {}
        self._watchers[ref] = watcher

    def drop_watcher(self, ref: MonitorRef) -> None:
        """Forget the watcher noted under ``ref`` (bookkeeping only, as ``add_watcher``)."""
        if self._watchers:
            self._watchers.pop(ref, None)

    def link(self, target: Address) -> None:
        """Tie this actor's fate to ``target``'s, both ways (Erlang's link); ``target`` may
        live on another node (its node going away is exit reason noconnection)."""
        if target.node != self.node.name:
            self.remember_link(target)
            self.node.link_remote(self.address, target)
            return
        other = self.node.actor(target)
        if other is None:
            self.signal_exit(target, NOPROC)
            return
        self.remember_link(target)
        other.remember_link(self.address)

    def unlink(self, target: Address) -> None:
        """Undo link(target)."""
        self.forget_link(target)
        if target.node != self.node.name:
            self.node.unlink_remote(self.address, target)
            return
        other = self.node.actor(target)
        if other is not None:
            other.forget_link(self.address)

    def remember_link(self, target: Address) -> None:
        """Note a link to ``target`` (bookkeeping only: ``link`` is what actor code calls; the
        runtime calls this for the other side of a link, local or remote)."""
        if self._links is None:
            self._links = set()
        self._links.add(target)

    def forget_link(self, target: Address) -> None:
        """Drop the note of a link to ``target`` (bookkeeping only, as ``remember_link``)."""
        if self._links is not None:
            self._links.discard(target)

    # ---- control from the runtime -------------------------------------------------------

    def signal_exit(self, sender: Address | None, reason: ExitReason) -> None:
        """An exit signal: trapped as an ``Exit`` message, else stop (normal is ignored)."""
        if self.trap_exits and reason is not KILLED:
            self.mailbox.put_system(Exit(sender, reason))
        elif reason != NORMAL:
            self.terminate(reason)

    def terminate(self, reason: ExitReason) -> None:
        """Cancel the actor's task; it ends with ``reason`` (the first one given wins)."""
        if self._stop_reason is None:
            self._stop_reason = reason
        self._scope.cancel()

    async def wait(self) -> ExitReason:
        """Wait for the actor to end; return why it did."""
        if self.exit_reason is None:
            if self._finished is None:
                self._finished = trio.Event()
            await self._finished.wait()
        else:
            await trio.lowlevel.checkpoint()
        assert self.exit_reason is not None
        return self.exit_reason

    @property
    def finished(self) -> bool:
        """Whether the actor has ended."""
        return self.exit_reason is not None

    def _overflowed(self) -> None:
        self.terminate(MAILBOX_OVERFLOW)

    async def run(self, fn: ActorFunction, args: tuple[Any, ...]) -> None:
        """The actor's task: run ``fn`` and turn how it ended into an exit reason.

        An exception from ``fn`` is logged and becomes ``Crash``; it never propagates
        into the nursery, so one actor's crash never cancels its siblings.
        """
        _current_actor.set(self)
        reason: ExitReason = SHUTDOWN
        try:
            with self._scope:
                await fn(self, *args)
                reason = NORMAL
            if self._scope.cancelled_caught:
                reason = self._stop_reason or KILLED
        except BaseException as exc:
            stopped = _reason_for(exc)
            if stopped is None:
                raise  # cancellation from outside, KeyboardInterrupt...: not ours to stop
            reason = stopped
            if isinstance(reason, Crash) and not isinstance(exc, ActorExit):
                # An actor that exits with a crash it caught has logged it already.
                logger.error("%s (%s) crashed", self.address, self.kind, exc_info=exc)
        finally:
            self._finish(reason)

    def _finish(self, reason: ExitReason) -> None:
        self.exit_reason = reason
        self.mailbox.close()
        for timer in self._timers or ():
            self.node.timers.cancel(timer)
        self._timers = None
        self.node.forget(self)
        for ref, target in (self._watching or {}).items():
            other = self.node.actor(target)
            if other is not None and other._watchers:
                other._watchers.pop(ref, None)
        for ref, watcher in (self._watchers or {}).items():
            watching = self.node.actor(watcher)
            if watching is not None and watching._watching:
                watching._watching.pop(ref, None)  # a monitor ends with its Down
            self.node.notify(watcher, Revocable(ref, Down(ref, self.address, reason)))
        for linked in self._links or ():
            other = self.node.actor(linked)
            if other is not None:
                other.forget_link(self.address)
                other.signal_exit(self.address, reason)
            elif linked.node != self.node.name:
                self.node.exit_linked_remote(self.address, linked, reason)
        if self._finished is not None:
            self._finished.set()


def _reason_for(exc: BaseException) -> ExitReason | None:
    """ActorExit gives its reason, an Exception is a crash; None for what must propagate.

    Groups of one (a nursery wrapping a single error) are unwrapped, so a crash names
    the error itself and an ActorExit raised inside a nested nursery still counts.
    """
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if isinstance(exc, ActorExit):
        return exc.reason
    if isinstance(exc, Exception):
        return Crash(exc)
    return None
