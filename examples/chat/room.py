"""A chat room as a ``GenServer``: its roster, its history, and the fan-out to its members.

A connection joins with ``actors.call(room, Join(...))``: the room answers ``Joined`` or
``JoinRefused`` (the reason, for the client); ``Say`` and ``Leave`` are casts. All are registered
with ``actors.wire_type``, as a room and its members may live on different nodes. The room
answers with frames written straight to the connections' outboxes (``send_frame`` for one,
``broadcast`` to the room's group ``chat:<room>``, each frame JSON- and WebSocket-encoded once).
It monitors every member, so a connection that ends without a ``Leave`` still leaves (with a
``left`` to the others).

After a crash the room restarts empty. Its group outlives it (the members are connections), so
the new room finds the old members there, sends each ``RoomRestarted``, and they join again with
their nicks; once all have (or ``settle`` seconds have passed) every member gets a fresh
``members`` and ``{"type": "error", "reason": "room restarted: ..."}``. The history is lost.

A room passes on at most ``ChatLimits.room_message_rate`` messages a second (with a burst of
``room_message_burst``), whoever says them: past it a ``say`` is dropped and its sender told, so
that many senders together cannot outrun the room's readers.

A room that becomes empty with no history stops at once (a new room waits ``settle`` seconds
for its first join). An empty room with history stays ``empty_ttl`` seconds, parked in the
app's ``HistoryBudget``: when all rooms' history passes the budget, the least recently used
parked rooms are told to stop (``Evict``), and if that is not enough the speaking room sheds its
own oldest messages. A room that stops takes its supervisor with it.
"""

from __future__ import annotations

from typing import Any

import attrs
import trio

import actors
from actors import Actor, Address, Caller, Down, GenServer, StopServer, Timeout, TimerRef
from server import TokenBucket, broadcast, send_frame

from . import protocol
from .budget import HistoryBudget
from .limits import ChatLimits
from .roster import Member, Roster


@actors.wire_type
@attrs.frozen
class Join:
    """A connection asks to join as ``nick`` (``rejoin``: after the room restarted)."""

    address: Address
    nick: str
    rejoin: bool = False


@actors.wire_type
@attrs.frozen
class Say:
    """A connection says ``text``."""

    address: Address
    text: str


@actors.wire_type
@attrs.frozen
class Leave:
    """A connection is closing."""

    address: Address


@actors.wire_type
@attrs.frozen
class Joined:
    """The answer to a ``Join``: the room at ``room`` accepted the connection as ``nick``."""

    room: Address
    nick: str


@actors.wire_type
@attrs.frozen
class JoinRefused:
    """The answer to a ``Join`` the room refused; ``reason`` is for the client."""

    reason: str


@actors.wire_type
@attrs.frozen
class RoomRestarted:
    """To a connection that was a member: the room restarted at ``room``; join it again."""

    room: Address


@actors.wire_type
@attrs.frozen
class Evict:
    """To an empty room, from the history budget or a full ``Rooms``: stop if still empty."""


@attrs.frozen
class RoomSettings:
    """Timings and limits of every room."""

    settle: float = 1.0
    """After a restart, how long old members get to rejoin before everyone is told; how long
    a new room waits for its first join."""
    empty_ttl: float = 300.0
    """An empty room with history stops after this many seconds (its history goes with it);
    one without history stops at once."""
    capacity: int = 4096
    """The room's mailbox; a connection whose message does not fit tells its client."""


RESTARTED = "room restarted: earlier messages were lost"
ROOM_BUSY = "slow down: this room gets too many messages right now; yours was dropped"


def room_key(room: str) -> str:
    """The name the room's actor is registered under."""
    return f"room:{room}"


def supervisor_key(room: str) -> str:
    """The name the room's own supervisor is registered under (one per node in a cluster:
    only the room itself is one actor cluster-wide)."""
    node = actors.current_node()
    if node.backend.node_id is None:
        return f"room-supervisor:{room}"
    return f"room-supervisor:{room}@{node.name}"


def group_of(room: str) -> str:
    """The group of the room's member connections (what ``broadcast`` reaches)."""
    return f"chat:{room}"


_SETTLED = "settled"
_EMPTY = "empty"


def evict(room: str, budget: HistoryBudget) -> None:
    """Tell ``room``, taken from the budget's parked rooms, to stop if it is still empty."""
    address = actors.whereis(room_key(room))
    if address is None:
        budget.forget(room)  # it stopped already
    elif not actors.send(address, Evict()):
        budget.park(room)  # its mailbox is full: it is busy, so not the one to go


class Room(GenServer["_Room"]):
    """The room behaviour: ``init(name)`` starts the room ``name``; one object serves every
    room of a ``Rooms`` (its settings, budget and limits are theirs)."""

    def __init__(self, settings: RoomSettings, budget: HistoryBudget, limits: ChatLimits) -> None:
        self.settings = settings
        self.budget = budget
        self.limits = limits

    def kind(self) -> str:
        return "chat room"

    def init(self, name: str) -> _Room:
        rate = TokenBucket(rate=self.limits.room_message_rate, burst=self.limits.room_message_burst)
        room = _Room(actors.current_actor(), name, self.settings, self.budget, rate)
        room.reclaim_members()
        return room

    def handle_call(self, request: Any, caller: Caller, state: _Room) -> Any:
        if not isinstance(request, Join):
            raise TypeError(f"a room takes Join calls, not {request!r}")
        answer, stop = state.join(request)
        return StopServer(state, answer=answer) if stop else (answer, state)

    def handle_cast(self, message: Any, state: _Room) -> _Room | StopServer[_Room]:
        return StopServer(state) if state.handle(message) else state

    def handle_info(self, message: Any, state: _Room) -> _Room | StopServer[_Room]:
        return StopServer(state) if state.handle(message) else state

    def terminate(self, reason: actors.ExitReason, state: _Room) -> None:
        self.budget.forget(state.name)


class _Room:
    """A room's state, and what it does with each join, cast and message (``handle`` and
    ``join`` say when it should stop)."""

    def __init__(
        self,
        actor: Actor,
        name: str,
        settings: RoomSettings,
        budget: HistoryBudget,
        rate: TokenBucket,
    ) -> None:
        self.actor = actor
        self.rate = rate
        """Messages the room passes on (``ChatLimits.room_message_rate``), whoever says them."""
        self.name = name
        self.group = group_of(name)
        self.settings = settings
        self.budget = budget
        self.roster = Roster()
        self.settling: set[Address] = set()
        self.settle_timer: TimerRef | None = None
        self.empty_timer: TimerRef | None = None

    def reclaim_members(self) -> None:
        """After a restart: ask the connections still in the group to join again."""
        stale = actors.members(self.group)
        for address in stale:
            actors.leave(self.group, address)
            actors.send(address, RoomRestarted(self.actor.address))
        if stale:
            self.settling = set(stale)
            self.settle_timer = actors.start_timer(self.settings.settle, _SETTLED)
        else:
            self.empty_timer = actors.start_timer(self.settings.settle, _EMPTY)

    def handle(self, message: Any) -> bool:
        """Act on one cast or message; True means the room should stop now."""
        if isinstance(message, Say):
            self._say(message)
        elif isinstance(message, Leave):
            return self._leave(message.address, demonitor=True)
        elif isinstance(message, Down):
            return self._leave(message.address, demonitor=False)
        elif isinstance(message, Timeout):
            return self._timeout(message)
        elif isinstance(message, Evict):
            return self._stop_if_still_empty()
        return False

    def join(self, join: Join) -> tuple[Joined | JoinRefused, bool]:
        """Take a member in: the answer for the caller, and whether the room should stop now."""
        problem = self.roster.join_problem(join.address, join.nick)
        if problem is not None:
            return JoinRefused(problem), False
        node = self.actor.node
        if join.address.node == node.name and node.actor(join.address) is None:
            # The connection ended while its join was on the way.
            return JoinRefused("the connection has closed"), self._emptied()
        monitor = actors.monitor(join.address)
        self.roster.add(Member(join.address, join.nick, monitor))
        actors.join(self.group, join.address)
        self._cancel(self.empty_timer)
        self.empty_timer = None
        self.budget.unpark(self.name)
        joined = Joined(self.actor.address, join.nick)
        if join.address in self.settling:
            self.settling.discard(join.address)
            if not self.settling:
                self._announce_restart()
            return joined, False
        send_frame(join.address, protocol.history(self.roster.history()))
        send_frame(join.address, protocol.members(self.roster.nicks()))
        broadcast(self.group, protocol.joined(join.nick))
        return joined, False

    def _say(self, say: Say) -> None:
        member = self.roster.get(say.address)
        if member is None:
            send_frame(say.address, protocol.error("join first: say is for members of the room"))
            return
        if not self.rate.take(trio.current_time()):
            send_frame(say.address, protocol.error(ROOM_BUSY))
            return
        message = self.roster.record(member.nick, say.text, protocol.now())
        self._account()
        broadcast(self.group, protocol.said(message))

    def _account(self) -> None:
        """Tell the budget the history's size; evict parked rooms, or shed, while over it."""
        self.budget.update(self.name, self.roster.history_bytes)
        for room in self.budget.evictions():
            evict(room, self.budget)
        excess = self.budget.excess()
        if excess:
            self.roster.shed(excess)
            self.budget.update(self.name, self.roster.history_bytes)

    def _leave(self, address: Address, *, demonitor: bool) -> bool:
        settling = address in self.settling
        if settling:
            self.settling.discard(address)
            if not self.settling:
                self._announce_restart()
        member = self.roster.remove(address)
        if member is None:
            return settling and self._emptied()  # else not a member: nothing changed
        if demonitor:
            actors.demonitor(member.monitor)
            actors.leave(self.group, address)
        broadcast(self.group, protocol.left(member.nick))
        return self._emptied()

    def _timeout(self, timeout: Timeout) -> bool:
        if timeout.ref is self.settle_timer:
            self._announce_restart()
            return self._emptied()
        if timeout.ref is self.empty_timer:
            self.empty_timer = None
            return self._stop_if_still_empty()
        return False

    def _announce_restart(self) -> None:
        """Every member gets the fresh member list, then the news (one frame each, twice)."""
        self.settling.clear()
        self._cancel(self.settle_timer)
        self.settle_timer = None
        broadcast(self.group, protocol.members(self.roster.nicks()))
        broadcast(self.group, protocol.error(RESTARTED))

    def _emptied(self) -> bool:
        """Stop now if the room is empty and holds nothing; if it holds history, park it."""
        if len(self.roster) > 0 or self.settling:
            return False
        if self.roster.history_bytes == 0 and len(self.actor.mailbox) == 0:
            return self._stop()
        if self.roster.history_bytes:
            self.budget.park(self.name)
        if self.empty_timer is None:
            ttl = self.settings.empty_ttl if self.roster.history_bytes else self.settings.settle
            self.empty_timer = actors.start_timer(ttl, _EMPTY)
        return False

    def _stop_if_still_empty(self) -> bool:
        """Stop (with the room's supervisor) unless someone joined or a message waits."""
        if len(self.roster) > 0 or self.settling:
            self.budget.unpark(self.name)
            return False
        if len(self.actor.mailbox) > 0:
            self.budget.unpark(self.name)
            self._cancel(self.empty_timer)
            self.empty_timer = None
            self._emptied()  # a join may be waiting: look again later
            return False
        return self._stop()

    def _stop(self) -> bool:
        supervisor = actors.whereis(supervisor_key(self.name))
        if supervisor is not None:
            actors.send_exit(supervisor, actors.NORMAL)
        return True

    @staticmethod
    def _cancel(timer: TimerRef | None) -> None:
        if timer is not None:
            actors.cancel_timer(timer)
