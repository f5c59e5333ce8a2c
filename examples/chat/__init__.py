"""A chat server: rooms as supervised actors, a page at ``/``, a WebSocket at ``/ws/:room``.

    corral serve examples.chat:app --port 8080     # then open http://127.0.0.1:8080/?room=lobby

Clients send ``{"type": "join", "nick"}`` and ``{"type": "say", "text", "id"}``; the server
sends ``history`` (last 50), ``members``, ``joined``, ``left`` (from presence: a person's first
connection coming, their last one going), ``said`` (to everyone in the room, the sender
included), ``sent`` (the room has the say of that ``id``) and ``error`` (to the sender only, with
the say's ``id`` if it is about one; bad input never closes anything). A room that crashes, or
whose node dies, starts again with its members (from presence) and its history (its topic, on
Redis with ``--redis``: ``history``); a say it never answered goes to the new room (see
``room``). ``said`` and ``history`` carry their position in the room's topic, and a join with
the last one a client showed resumes from it: exactly what it missed, or ``unrecoverable``
(see ``protocol``).

Limits, so that no one client can spoil the chat for the others (numbers in ``ChatLimits`` and
``protocol``; pass ``make_app(limits=ChatLimits(...))`` to change them):

- **Messages, per connection**: every client frame takes a token from a bucket of 100 that
  refills at 10 a second (``server.TokenBucket``). Past it frames are dropped: the first of a run
  gets ``{"type": "error", "reason": "slow down: ..."}``, and 100 dropped in a row close the
  connection with 1008. A flood stops at the connection and never reaches the room, so the
  room's readers only ever get what its members may send.
- **Nicks**: 1 to 32 characters; no control, format, unassigned or default-ignorable characters
  (U+200B, U+034F, U+FE0F, U+3164...), no leading or trailing spaces nor look-alikes (U+2800);
  unique in the room by Unicode's confusable skeleton, case-folded (``ann``, ``ANN``, ``аnn``
  with a Cyrillic а, ``Ann`` + U+FE0F are one nick). A text is at most 4096 bytes of UTF-8; a
  frame over 64 KiB closes the connection with 1009.
- **Rooms**: a room that becomes empty with no history stops at once. One with history stays
  300 s (``RoomSettings.empty_ttl``) and is evictable: all rooms' history together is bounded
  by ``max_history_bytes`` (64 MiB; a full room holds about 230 KB), and past it the least
  recently used empty rooms go first, then the speaking room's oldest messages. At
  ``max_rooms`` (10,000) the least recently used empty room makes way for a new one; only when
  every room has members does a newcomer get "too many rooms are open".
- **Per peer address** (an IPv6 client counts by its /64): at most 20 new rooms at once and one
  a second after that ("too many new rooms from your address"; joining a running room is not
  limited this way), and at most 256 connections in rooms at once (a connection counts from its
  first ``join`` until it closes: "too many connections from your address are in rooms"). So one
  address cannot hold ``max_rooms`` rooms open either.
- **Messages, per peer address and per room**: all the connections of one address together say
  at most 20 a second (bursts of 100), and a room passes on at most 50 a second (bursts of 100),
  whoever says them; past either a say is dropped with an ``error``. Reconnecting for a fresh
  burst, or opening many connections, gains nothing; the room's readers keep up.

With a secret (``make_app(secret=...)``; ``app`` takes it from ``CORRAL_CHAT_SECRET``) every
connection needs a signed token (``server.tokens``) allowing its room (``room:<name>``), and the
token's subject is its nick; ``python -m examples.chat.token NICK`` issues one.

Modules, one job each: ``protocol`` (the wire format and its checks), ``confusables`` (Unicode's
confusable skeleton), ``limits`` (the numbers, the per-connection throttle, per-peer quotas),
``budget`` (the history budget), ``roster`` (a room's members and what its history costs, as
plain data), ``history`` (a room's messages as posts to its topic: delivered, resumed, kept),
``room`` (the room, a ``GenServer``), ``rooms`` (rooms on demand under supervision),
``handler`` (one connection), ``app`` (routes and children), ``token`` (issues tokens).
"""

from .app import app, make_app
from .limits import ChatLimits
from .room import RoomSettings

__all__ = ["ChatLimits", "RoomSettings", "app", "make_app"]
