"""Rooms on demand: a dynamic supervisor of per-room supervisors, each restarting its room.

Each room runs under its own one-child supervisor (registered ``room-supervisor:<room>``), itself
a temporary child of the app's dynamic supervisor. A room that keeps crashing exhausts only its
own restart intensity; its members are asked to rejoin by the next room of that name. Rooms are
found by their registered name ``room:<room>`` and started the first time someone joins.

Limits (``ChatLimits``): each peer address may start ``room_creation_burst`` rooms at once and
``room_creation_rate`` a second after that, have ``max_members_per_peer`` connections in
rooms (``members``, counted by the handler) and say ``peer_message_rate`` messages a second
(``says``, taken by the handler); at ``max_rooms`` the least recently used empty room
with history is evicted to make way (empty rooms without history stop at once, see ``room``),
and only when every room has members is a newcomer told that there are too many rooms.
"""

from __future__ import annotations

import math

import trio

import actors
from actors import (
    Address,
    ChildSpec,
    DynamicSupervisor,
    NameTaken,
    Restart,
    Supervisor,
    SupervisorNotRunning,
    TooManyChildren,
)

from .budget import HistoryBudget
from .history import ChatHistory
from .limits import ChatLimits, PeerCount, PeerQuota
from .room import Room, RoomSettings, evict, group_of, room_key, supervisor_key


class RoomUnavailable(Exception):
    """The room could not be opened; the message says why, for the client."""


class Rooms:
    """The app's rooms: ``child_spec`` goes in ``App(children=...)``, ``open`` finds a room."""

    def __init__(
        self,
        settings: RoomSettings | None = None,
        limits: ChatLimits | None = None,
        *,
        open_timeout: float = 2.0,
    ) -> None:
        self.settings = settings or RoomSettings()
        self.limits = limits = limits or ChatLimits()
        self.open_timeout = open_timeout
        self.budget = HistoryBudget(limits.max_history_bytes)
        self.history = ChatHistory(ttl=self.settings.empty_ttl, group_of=group_of)
        """The rooms' topics: their history (beyond their own life) and what members follow."""
        self.creations = PeerQuota(limits.room_creation_rate, limits.room_creation_burst)
        self.members = PeerCount(limits.max_members_per_peer)
        """Connections in rooms per peer address (counted by the handler, join to terminate)."""
        self.says = PeerQuota(limits.peer_message_rate, limits.peer_message_burst)
        """Messages per peer address, all its connections together (taken by the handler)."""
        self._supervisor = DynamicSupervisor(max_children=limits.max_rooms)
        self._room = Room(self.settings, self.budget, limits, self.history)

    def child_specs(self) -> list[ChildSpec]:
        """What runs the rooms under the server's root: this node's presence tracker (who is
        in which room), the history writer, and the rooms' dynamic supervisor."""
        return [
            actors.presence.child_spec(),
            self.history.child_spec("history"),
            self._supervisor.child_spec("rooms"),
        ]

    async def open(self, room: str, peer: str = "unknown", gone: Address | None = None) -> Address:
        """The address of ``room``, started (with its supervisor) if it is not running.

        ``peer`` (see ``limits.peer_key``) is charged if the room has to be started. Waits while
        the room is being restarted or an evicted room makes way, and while its name still
        points at ``gone`` (a room known to have ended, whose node has not released the name
        yet); raises RoomUnavailable when the peer starts rooms too fast, when every room has
        members, or when the room did not come up within ``open_timeout``.
        """
        charged = False
        with trio.move_on_after(self.open_timeout):
            while True:
                address = actors.whereis(room_key(room))
                if address is not None and address == gone:
                    await trio.sleep(0.05)  # no event says a name was released on another node
                    continue
                if address is not None:
                    return address
                if actors.whereis(supervisor_key(room)) is None:
                    if not charged and not self.creations.take(peer, trio.current_time()):
                        raise RoomUnavailable(
                            "too many new rooms from your address: join an open room, or try "
                            "again in a few seconds"
                        )
                    charged = True
                    self._start(room)
                with trio.move_on_after(0.05):
                    return await actors.wait_for(room_key(room))
        raise RoomUnavailable("room unavailable: it did not start in time, try again")

    def count(self) -> int:
        """How many rooms are open."""
        return self._supervisor.count_children()

    def _start(self, room: str) -> None:
        try:
            self._supervisor.start_child(self._room_supervisor_spec(room))
        except NameTaken:
            pass  # another connection started it just now
        except TooManyChildren:
            if self.budget.evicting:
                return  # an evicted room is making way
            victim = self.budget.evict_one()
            if victim is None:
                raise RoomUnavailable("too many rooms are open: try again later") from None
            evict(victim, self.budget)
        except SupervisorNotRunning:
            raise RoomUnavailable("the server is stopping") from None

    def _room_supervisor_spec(self, room: str) -> ChildSpec:
        room_spec = self._room.child_spec(
            "room",
            room,
            restart=Restart.TRANSIENT,
            shutdown=1.0,
            name=room_key(room),
            capacity=self.settings.capacity,
        )
        supervisor = Supervisor([room_spec])
        return ChildSpec(
            f"room {room}",
            supervisor.run,
            restart=Restart.TEMPORARY,
            shutdown=math.inf,
            name=supervisor_key(room),
            trap_exits=True,
            kind="room supervisor",
        )
