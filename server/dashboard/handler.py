"""The dashboard's two routes: the page (one static HTML file) and its live feed.

The feed is an ordinary corral WebSocket handler: every ``TICK`` seconds its own timer
brings a ``websocket_info``, which sends a JSON snapshot (``snapshot.snapshot``). One handler
object serves every dashboard connection: what differs per connection (the last chart sample
sent) is the threaded state, never an attribute of the handler.
"""

from __future__ import annotations

import functools
import json
import time
from importlib import resources
from typing import Any

import attrs

import actors
from actors import Timeout

from ..commands import Text
from ..handler import InitResult, Result, Upgrade, WebSocketHandler
from ..http import Request, Response, method_not_allowed
from ..tally import tally_of
from .access import forbidden, may_see
from .history import history_of
from .snapshot import snapshot

TICK = 1.0
"""Seconds between two updates of an open page."""
_TICK = "corral.dashboard.tick"
_PAGE = "dashboard.html"


@attrs.frozen
class FeedState:
    """One open page: the last history sample it has been sent (-1: none yet)."""

    since: int = -1


class DashboardFeed(WebSocketHandler[FeedState]):
    """Pushes a snapshot on upgrade and then every ``TICK`` seconds, to loopback or token
    holders (403 for anyone else)."""

    def __init__(self, token: str | None, route: str) -> None:
        self.token = token
        self.route = route
        """The feed's own route pattern: its connections do not count as traffic."""

    def init(self, request: Request) -> InitResult[FeedState]:
        """Upgrade if the request may see the dashboard, else 403."""
        return Upgrade(FeedState()) if may_see(request, self.token) else forbidden()

    def websocket_init(self, state: FeedState) -> Result[FeedState]:
        """The first update at once: it carries the whole history."""
        return self._update(state)

    def websocket_info(self, message: Any, state: FeedState) -> Result[FeedState]:
        """Our tick: send the next update (anything else is ignored)."""
        if isinstance(message, Timeout) and message.msg == _TICK:
            return self._update(state)
        return None, state

    def _update(self, state: FeedState) -> Result[FeedState]:
        node = actors.current_node()
        history = history_of(node)
        now = time.time()
        history.sample_if_due(node, now)
        update = snapshot(
            node, tally_of(node), history, since=state.since, now=now, feed_route=self.route
        )
        actors.start_timer(TICK, _TICK)
        return Text(json.dumps(update, separators=(",", ":"))), FeedState(since=update["seq"])


@attrs.frozen
class DashboardPage:
    """The HTTP handler serving the page to loopback or token holders (403 for anyone else)."""

    token: str | None

    def __call__(self, request: Request) -> Response:
        """GET/HEAD the page."""
        if request.method not in ("GET", "HEAD"):
            return method_not_allowed(("GET", "HEAD"))
        if not may_see(request, self.token):
            return forbidden()
        return Response(
            200,
            [
                ("Content-Type", "text/html; charset=utf-8"),
                ("Cache-Control", "no-store"),
                ("X-Content-Type-Options", "nosniff"),
            ],
            page(),
        )


@functools.cache
def page() -> bytes:
    """The dashboard's HTML (markup, style and script in one file), read once."""
    return resources.files(__package__).joinpath("static", _PAGE).read_bytes()
