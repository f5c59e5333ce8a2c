"""A chat server: rooms as supervised actors, a page at ``/``, a WebSocket at ``/ws/:room``.

    corral serve examples.chat:app --port 8080     # then open http://127.0.0.1:8080/?room=lobby

Clients send ``{"type": "join", "nick"}`` and ``{"type": "say", "text"}``; the server sends
``history`` (last 50), ``members``, ``joined``, ``left``, ``said`` (to everyone in the room, the
sender included) and ``error`` (to the sender only; bad input never closes anything). Limits are
in ``protocol``. A room that crashes restarts empty: its members rejoin by themselves and each
gets a fresh ``members`` and ``{"type": "error", "reason": "room restarted: ..."}`` (see ``room``).

Modules, one job each: ``protocol`` (the wire format and its checks), ``roster`` (a room's
members and history as plain data), ``room`` (the room actor), ``rooms`` (rooms on demand under
supervision), ``handler`` (one connection), ``app`` (routes and children).
"""

from .app import app, make_app
from .limits import ChatLimits
from .room import RoomSettings

__all__ = ["ChatLimits", "RoomSettings", "app", "make_app"]
