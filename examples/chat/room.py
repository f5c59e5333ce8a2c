"""A chat room as an actor: its roster, its history, and the fan-out to its members.

Connections send the room ``Join``, ``Say`` and ``Leave``; the room answers with frames written
straight to the connections' outboxes (``send_frame`` for one, ``broadcast`` to the room's group
``chat:<room>``, each frame JSON- and WebSocket-encoded once) and tells a connection whose join
it accepted with a ``Joined`` message. It monitors every member, so a connection that ends
without a ``Leave`` still leaves (with a ``left`` to the others).

After a crash the room restarts empty. Its group outlives it (the members are connections), so
the new room finds the old members there, sends each ``RoomRestarted``, and they join again with
their nicks; once all have (or ``settle`` seconds have passed) every member gets a fresh
``members`` and ``{"type": "error", "reason": "room restarted: ..."}``. The history is lost.

An empty room stops after ``empty_ttl`` seconds, and takes its supervisor with it.
"""

from __future__ import annotations

from typing import Any

import attrs

import actors
from actors import Actor, Address, Down, Timeout, TimerRef
from server import broadcast, send_frame

from . import protocol
from .roster import Member, Roster


@attrs.frozen
class Join:
    """A connection asks to join as ``nick`` (``rejoin``: after the room restarted)."""

    address: Address
    nick: str
    rejoin: bool = False


@attrs.frozen
class Say:
    """A connection says ``text``."""

    address: Address
    text: str


@attrs.frozen
class Leave:
    """A connection is closing."""

    address: Address


@attrs.frozen
class Joined:
    """To a connection: the room at ``room`` accepted it as ``nick``."""

    room: Address
    nick: str


@attrs.frozen
class RoomRestarted:
    """To a connection that was a member: the room restarted at ``room``; join it again."""

    room: Address


@attrs.frozen
class RoomSettings:
    """Timings and limits of every room."""

    settle: float = 1.0
    """After a restart, how long old members get to rejoin before everyone is told."""
    empty_ttl: float = 300.0
    """An empty room stops after this many seconds (its history goes with it)."""
    capacity: int = 4096
    """The room's mailbox; a connection whose message does not fit tells its client."""


RESTARTED = "room restarted: earlier messages were lost"


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


async def room_actor(actor: Actor, name: str, settings: RoomSettings) -> None:
    """The body of the room ``name``: handle messages until it stops for being empty."""
    room = _Room(actor, name, settings)
    room.reclaim_members()
    async for message in actor:
        if room.handle(message):
            return


class _Room:
    """What the room actor does with each message; ``handle`` returns True to stop."""

    def __init__(self, actor: Actor, name: str, settings: RoomSettings) -> None:
        self.actor = actor
        self.name = name
        self.group = group_of(name)
        self.settings = settings
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
            self._stop_when_empty()

    def handle(self, message: Any) -> bool:
        """Act on one message; True means the room should stop now."""
        if isinstance(message, Say):
            self._say(message)
        elif isinstance(message, Join):
            self._join(message)
        elif isinstance(message, Leave):
            self._leave(message.address, demonitor=True)
        elif isinstance(message, Down):
            self._leave(message.address, demonitor=False)
        elif isinstance(message, Timeout):
            return self._timeout(message)
        return False

    def _join(self, join: Join) -> None:
        problem = self.roster.join_problem(join.address, join.nick)
        if problem is not None:
            send_frame(join.address, protocol.error(problem))
            return
        node = self.actor.node
        if join.address.node == node.name and node.actor(join.address) is None:
            return  # the connection ended while its join was on the way
        monitor = actors.monitor(join.address)
        self.roster.add(Member(join.address, join.nick, monitor))
        actors.join(self.group, join.address)
        self._cancel(self.empty_timer)
        actors.send(join.address, Joined(self.actor.address, join.nick))
        if join.address in self.settling:
            self.settling.discard(join.address)
            if not self.settling:
                self._announce_restart()
            return
        send_frame(join.address, protocol.history(self.roster.history()))
        send_frame(join.address, protocol.members(self.roster.nicks()))
        broadcast(self.group, protocol.joined(join.nick))

    def _say(self, say: Say) -> None:
        member = self.roster.get(say.address)
        if member is None:
            send_frame(say.address, protocol.error("join first: say is for members of the room"))
            return
        message = self.roster.record(member.nick, say.text, protocol.now())
        broadcast(self.group, protocol.said(message))

    def _leave(self, address: Address, *, demonitor: bool) -> None:
        if address in self.settling:
            self.settling.discard(address)
            if not self.settling:
                self._announce_restart()
        member = self.roster.remove(address)
        if member is None:
            return
        if demonitor:
            actors.demonitor(member.monitor)
            actors.leave(self.group, address)
        broadcast(self.group, protocol.left(member.nick))
        self._stop_when_empty()

    def _timeout(self, timeout: Timeout) -> bool:
        if timeout.ref is self.settle_timer:
            self._announce_restart()
        elif timeout.ref is self.empty_timer:
            return self._stop_if_still_empty()
        return False

    def _announce_restart(self) -> None:
        """Every member gets the fresh member list, then the news (one frame each, twice)."""
        self.settling.clear()
        self._cancel(self.settle_timer)
        self.settle_timer = None
        broadcast(self.group, protocol.members(self.roster.nicks()))
        broadcast(self.group, protocol.error(RESTARTED))
        self._stop_when_empty()

    def _stop_when_empty(self) -> None:
        if len(self.roster) == 0 and not self.settling:
            self._cancel(self.empty_timer)
            self.empty_timer = actors.start_timer(self.settings.empty_ttl, _EMPTY)

    def _stop_if_still_empty(self) -> bool:
        """Stop (with the room's supervisor) unless someone joined or a message waits."""
        self.empty_timer = None
        if len(self.roster) > 0 or self.settling:
            return False
        if len(self.actor.mailbox) > 0:
            self._stop_when_empty()  # a join may be waiting: look again later
            return False
        supervisor = actors.whereis(supervisor_key(self.name))
        if supervisor is not None:
            actors.exit(supervisor, actors.NORMAL)
        return True

    @staticmethod
    def _cancel(timer: TimerRef | None) -> None:
        if timer is not None:
            actors.cancel_timer(timer)
