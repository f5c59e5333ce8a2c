"""Rooms on demand: a dynamic supervisor of per-room supervisors, each restarting its room.

Each room runs under its own one-child supervisor (registered ``room-supervisor:<room>``), itself
a temporary child of the app's dynamic supervisor. A room that keeps crashing exhausts only its
own restart intensity; its members are asked to rejoin by the next room of that name. Rooms are
found by their registered name ``room:<room>`` and started the first time someone joins.
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

from .room import RoomSettings, room_actor, room_key, supervisor_key


class RoomUnavailable(Exception):
    """The room could not be opened; the message says why, for the client."""


class Rooms:
    """The app's rooms: ``child_spec`` goes in ``App(children=...)``, ``open`` finds a room."""

    def __init__(
        self,
        settings: RoomSettings | None = None,
        *,
        max_rooms: int = 10_000,
        open_timeout: float = 2.0,
    ) -> None:
        self.settings = settings or RoomSettings()
        self.open_timeout = open_timeout
        self._supervisor = DynamicSupervisor(max_children=max_rooms)

    def child_spec(self, id: str = "rooms") -> ChildSpec:
        """The spec that runs the rooms' dynamic supervisor under the server's root."""
        return self._supervisor.child_spec(id)

    async def open(self, room: str) -> Address:
        """The address of ``room``, started (with its supervisor) if it is not running.

        Waits while the room is being restarted; raises RoomUnavailable when there are too
        many rooms or the room did not come up within ``open_timeout``.
        """
        with trio.move_on_after(self.open_timeout):
            while True:
                address = actors.whereis(room_key(room))
                if address is not None:
                    return address
                if actors.whereis(supervisor_key(room)) is None:
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
            raise RoomUnavailable("too many rooms are open: try again later") from None
        except SupervisorNotRunning:
            raise RoomUnavailable("the server is stopping") from None

    def _room_supervisor_spec(self, room: str) -> ChildSpec:
        settings = self.settings
        room_spec = ChildSpec(
            "room",
            room_actor,
            args=(room, settings),
            restart=Restart.TRANSIENT,
            shutdown=1.0,
            name=room_key(room),
            capacity=settings.capacity,
            kind="chat room",
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
