"""The chat app: the page at ``/``, the WebSocket at ``/ws/:room``, the rooms' supervisor."""

from __future__ import annotations

from pathlib import Path

from server import App, ConnectionOptions, static, websocket

from .handler import ChatHandler
from .limits import ChatLimits
from .protocol import room_name
from .room import RoomSettings
from .rooms import Rooms

STATIC = Path(__file__).resolve().parent / "static"

OPTIONS = ConnectionOptions(idle_timeout=90.0, ping_interval=30.0, max_message_size=64 * 1024)
"""Pings keep idle browser tabs connected; a frame over 64 KiB closes the connection (1009),
while a text between 4 KiB and that gets an ``error``."""


def make_app(settings: RoomSettings | None = None, *, limits: ChatLimits | None = None) -> App:
    """A chat app with its own rooms (each call: independent rooms, for tests)."""
    rooms = Rooms(settings, limits)
    return App(
        [
            websocket(
                "/ws/:room",
                ChatHandler(rooms),
                constraints={"room": room_name},
                options=OPTIONS,
            ),
            static("/", STATIC),
        ],
        children=[rooms.child_spec("rooms")],
    )


app = make_app()
