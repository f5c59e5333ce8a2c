"""Testing your handlers: in-process, on virtual time, or over a real socket.

- ``drive(MyWsHandler(), "/path?q=1", headers=..., bindings=...)`` runs one handler through its
  whole life without a port or a network, on the server's own code: ``init`` with a built
  ``Request``, then the real connection loop as an actor, fed client frames through a socket
  pair (the transport a TCP client gets).
  Timers run on trio's clock, so under a ``MockClock`` (pytest-trio's ``autojump_clock``)
  a test of a one-second tick takes no real time. Out come what the handler sent, the close
  code, the ``terminate`` reason and its latest state. ``driven.change_code(NewHandler())``
  moves it to new code as a hot upgrade does, through ``code_change``.
- ``connect(app, "/path")`` runs the app on a free port (``server.serving``) and connects a
  trio-websocket client; ``open_client(url)`` connects one to a server already running.

Both sides offer the same assertions, each failing with ``AssertionError`` saying what
came instead: ``receive``/``receive_json`` (the next push), ``assert_push(match)`` (a push
matching ``match`` arrives in time; others stay queued), ``refute_push()`` (nothing arrives
for a while) and ``assert_closed(code)``. A ``match`` is a ``Text``/``Binary``, a ``str``
(a text push equal to it), ``bytes``, a ``dict`` (a JSON object holding those keys with
those values), or a predicate on the push.

The kit needs the ``test`` extra (``pip install 'corral[test]'``: trio-websocket, its client).
"""

from .client import Client, connect, open_client
from .driver import Driven, Refused, build_request, drive, frame
from .pushes import ASSERT_TIMEOUT, REFUTE_TIMEOUT, Match, Pushes

__all__ = [
    "ASSERT_TIMEOUT",
    "REFUTE_TIMEOUT",
    "Client",
    "Driven",
    "Match",
    "Pushes",
    "Refused",
    "build_request",
    "connect",
    "drive",
    "frame",
    "open_client",
]
