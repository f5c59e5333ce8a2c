"""A chat server: rooms as supervised actors, a page at ``/``, a WebSocket at ``/ws/:room``.

    corral serve examples.chat:app --port 8080     # then open http://127.0.0.1:8080/?room=lobby

Modules, one job each: ``protocol`` (the wire format and its checks), ``roster`` (a room's
members and history as plain data), ``room`` (the room actor), ``rooms`` (rooms on demand under
supervision), ``handler`` (one connection), ``app`` (routes and children).
"""

from .app import app, make_app
from .room import RoomSettings

__all__ = ["RoomSettings", "app", "make_app"]
