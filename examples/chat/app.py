"""The chat app: the page at ``/``, the WebSocket at ``/ws/:room``, the rooms' supervisor."""

from __future__ import annotations

import os
from pathlib import Path

from server import App, ConnectionOptions, static, websocket
from server.tokens import TokenAuth

from .handler import ChatHandler
from .limits import ChatLimits
from .protocol import room_name
from .room import RoomSettings
from .rooms import Rooms

STATIC = Path(__file__).resolve().parent / "static"

OPTIONS = ConnectionOptions(idle_timeout=90.0, ping_interval=30.0, max_message_size=64 * 1024)
"""Pings keep idle browser tabs connected; a frame over 64 KiB closes the connection (1009),
while a text between 4 KiB and that gets an ``error``."""


SECRET_VARIABLE = "CORRAL_CHAT_SECRET"
"""The environment variable whose value (32 bytes or more), if set, makes ``app`` take nicks
from signed tokens only (``python -m examples.chat.token NICK`` issues one)."""


def make_app(
    settings: RoomSettings | None = None,
    *,
    limits: ChatLimits | None = None,
    secret: str | None = None,
) -> App:
    """A chat app with its own rooms (each call: independent rooms, for tests).

    With a ``secret``, every connection needs a token signed with it (``server.tokens``), which
    sets its nick and may list the rooms it may join (topics ``room:<name>``)."""
    rooms = Rooms(settings, limits)
    auth = None if secret is None else TokenAuth(secret)
    return App(
        [
            websocket(
                "/ws/:room",
                ChatHandler(rooms, auth),
                constraints={"room": room_name},
                options=OPTIONS,
            ),
            static("/", STATIC),
        ],
        children=rooms.child_specs(),
    )


app = make_app(secret=os.environ.get(SECRET_VARIABLE) or None)
