"""A chat room as a ``GenServer``: its roster, its history, and the fan-out to its members.

A connection joins with ``actors.call(room, Join(...))``: the room answers ``Joined`` or
``JoinRefused`` (the reason, for the client); ``Say`` and ``Leave`` are casts. All are registered
with ``actors.wire_type``, as a room and its members may live on different nodes. A message
the room takes is a post to its topic (``ChatHistory.append``: ``room:<room>``), which delivers
it to the members with its position (each frame JSON- and WebSocket-encoded once per node), so a
client that comes back gets exactly what it missed; the roster counts what the topic keeps (the
history budget). Its other answers are frames written straight to a connection (``send_frame``).
It monitors every member, so a connection that ends without a ``Leave`` still leaves. Who is
in the room, as members see it, comes from presence (``actors.presence``, topic
``room:<room>``): each connection tracks itself once joined and tells its own client who comes
and goes, on whichever node it is.

A room that starts again (after a crash, or on another node after its node died) rebuilds its
roster from presence, without asking anyone: every connection present gets ``Rejoined`` from
the new room, and the history comes back from its topic (in process, or on Redis). A ``Say``
with an ``id`` is answered with ``Heard``, so that a connection can send it again to the
room's next incarnation if this one dies first.

A room passes on at most ``ChatLimits.room_message_rate`` messages a second (with a burst of
``room_message_burst``), whoever says them: past it a ``say`` is dropped and its sender told, so
that many senders together cannot outrun the room's readers.

A room that becomes empty with no history stops at once (a new room waits ``settle`` seconds
for its first join). An empty room with history stays ``empty_ttl`` seconds, parked in the
app's ``HistoryBudget``: when all rooms' history passes the budget, the least recently used
parked rooms are told to stop (``Evict``), and if that is not enough the speaking room sheds its
own oldest messages. A room that stops takes its supervisor with it, and forgets its topic.
"""

from __future__ import annotations

import functools
from typing import Any

import attrs
import trio

import actors
from actors import (
    Actor,
    Address,
    Caller,
    Down,
    GenServer,
    StopServer,
    Timeout,
    TimerRef,
    presence,
)
from server import TokenBucket, send_frame

from . import protocol
from .budget import HistoryBudget
from .history import ChatHistory
from .limits import ChatLimits
from .protocol import Said
from .roster import Member, Roster


@actors.wire_type
@attrs.frozen
class Join:
    """A connection asks to join as ``nick`` (``signed``: its token's, shareable by the same
    person's other connections)."""

    address: Address
    nick: str
    signed: bool = False


@actors.wire_type
@attrs.frozen
class Say:
    """A connection says ``text`` (with an ``id``: answer ``Heard``)."""

    address: Address
    text: str
    id: int | None = None


@actors.wire_type
@attrs.frozen
class Heard:
    """To a connection: the room took its say ``id`` (``problem`` None) or refused it."""

    id: int
    problem: str | None = None


@actors.wire_type
@attrs.frozen
class Leave:
    """A connection is closing."""

    address: Address


@actors.wire_type
@attrs.frozen
class Joined:
    """The answer to a ``Join``: the room at ``room`` accepted the connection as ``nick``; its
    history holds the last ``kept`` messages of its topic (what a new member is shown)."""

    room: Address
    nick: str
    kept: int = 0


@actors.wire_type
@attrs.frozen
class JoinRefused:
    """The answer to a ``Join`` the room refused; ``reason`` is for the client."""

    reason: str


@actors.wire_type
@attrs.frozen
class Rejoined:
    """To a connection present in the room: the room started again at ``room`` and has it
    as a member already (from presence)."""

    room: Address


@actors.wire_type
@attrs.frozen
class Evict:
    """To an empty room, from the history budget or a full ``Rooms``: stop if still empty."""


@attrs.frozen
class RoomSettings:
    """Timings and limits of every room."""

    settle: float = 1.0
    """How long a new room without members waits for its first join."""
    empty_ttl: float = 300.0
    """An empty room with history stops after this many seconds (its history goes with it);
    one without history stops at once."""
    capacity: int = 4096
    """The room's mailbox; a connection whose message does not fit tells its client."""
    say_timeout: float = 15.0
    """How long a say with an id waits for its room before its client is told it was not sent:
    a room whose node died moves to a live node once the cluster notices (5 s by default,
    ``--failure-detection``), and the say goes to it then."""


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


def presence_topic(room: str) -> str:
    """The presence topic of the room's members (key: nick; meta: ``{"conn", "signed"}``)."""
    return f"room:{room}"


_EMPTY = "empty"


def _hear(address: Address, say_id: int) -> None:
    """Tell a connection its say ``say_id`` went out (``Heard``)."""
    actors.send(address, Heard(say_id))


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

    def __init__(
        self,
        settings: RoomSettings,
        budget: HistoryBudget,
        limits: ChatLimits,
        history: ChatHistory,
    ) -> None:
        self.settings = settings
        self.budget = budget
        self.limits = limits
        self.history = history

    def kind(self) -> str:
        return "chat room"

    async def init(self, name: str) -> _Room:
        rate = TokenBucket(rate=self.limits.room_message_rate, burst=self.limits.room_message_burst)
        room = _Room(actors.current_actor(), name, self.settings, self.budget, rate, self.history)
        room.restore(await self.history.load(name))
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
        history: ChatHistory,
    ) -> None:
        self.actor = actor
        self.history = history
        self.rate = rate
        """Messages the room passes on (``ChatLimits.room_message_rate``), whoever says them."""
        self.name = name
        self.group = group_of(name)
        self.settings = settings
        self.budget = budget
        self.roster = Roster()
        self.empty_timer: TimerRef | None = None

    def restore(self, messages: list[Said]) -> None:
        """Start from the history kept by an earlier incarnation of the room."""
        for message in messages:
            self.roster.record(message.nick, message.text, message.at)
        if messages:
            self._account()

    def reclaim_members(self) -> None:
        """On start: whoever is present in the room (an earlier incarnation's members, on any
        node) is a member again, and is told where the room is now."""
        for nick, metas in presence.list(presence_topic(self.name)).items():
            for meta in metas:
                address = meta.data.get("conn")
                if isinstance(address, Address) and self.roster.get(address) is None:
                    self._admit(Join(address, nick, bool(meta.data.get("signed"))))
                    actors.send(address, Rejoined(self.actor.address))
        if not len(self.roster):
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
        problem = self.roster.join_problem(join.address, join.nick, shared=join.signed)
        if problem is not None:
            return JoinRefused(problem), False
        node = self.actor.node
        if join.address.node == node.name and node.actor(join.address) is None:
            # The connection ended while its join was on the way.
            return JoinRefused("the connection has closed"), self._emptied()
        self._admit(join)
        return Joined(self.actor.address, join.nick, self.roster.kept), False

    def _admit(self, join: Join) -> None:
        """Make ``join.address`` a member (monitored, in the group)."""
        monitor = actors.monitor(join.address)
        self.roster.add(Member(join.address, join.nick, monitor, join.signed))
        actors.join(self.group, join.address)
        self._cancel(self.empty_timer)
        self.empty_timer = None
        self.budget.unpark(self.name)

    def _say(self, say: Say) -> None:
        member = self.roster.get(say.address)
        problem = None
        if member is None:
            problem = "join first: say is for members of the room"
        elif not self.rate.take(trio.current_time()):
            problem = ROOM_BUSY
        else:
            message = self.roster.record(member.nick, say.text, protocol.now())
            self._account()
            heard = None if say.id is None else functools.partial(_hear, say.address, say.id)
            self.history.append(self.name, message, self.roster.kept, heard)
            return  # its topic delivers it, then the sender hears back
        if say.id is not None:
            actors.send(say.address, Heard(say.id, problem))
        elif problem is not None:
            send_frame(say.address, protocol.error(problem))

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
        member = self.roster.remove(address)
        if member is None:
            return False  # not a member: nothing changed
        actors.leave(self.group, address)
        if demonitor:
            actors.demonitor(member.monitor)
        return self._emptied()

    def _timeout(self, timeout: Timeout) -> bool:
        if timeout.ref is self.empty_timer:
            self.empty_timer = None
            return self._stop_if_still_empty()
        return False

    def _emptied(self) -> bool:
        """Stop now if the room is empty and holds nothing; if it holds history, park it."""
        if len(self.roster) > 0:
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
        if len(self.roster) > 0:
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
        self.history.forget(self.name)
        supervisor = actors.whereis(supervisor_key(self.name))
        if supervisor is not None:
            actors.send_exit(supervisor, actors.NORMAL)
        return True

    @staticmethod
    def _cancel(timer: TimerRef | None) -> None:
        if timer is not None:
            actors.cancel_timer(timer)
