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

from ...commands import Close, Text
from ...front.http import Request, Response, forbidden, method_not_allowed
from ...handler import InitResult, Result, Upgrade, WebSocketHandler
from ..stats import stats_of
from ..upgrade_request import request_upgrade
from .access import DashboardAccess
from .history import history_of
from .snapshot import snapshot

TICK = 1.0
"""Seconds between two updates of an open page."""
MAX_FEEDS = 8
"""Dashboard feeds open at once, by default; past it a new one is closed with 1013. Each
costs a snapshot a second (at 3,000 connections, about 1% of a core)."""
_TICK = "corral.dashboard.tick"
_PAGE = "dashboard.html"


@attrs.frozen
class FeedState:
    """One open page: the last history sample it has been sent (-1: none yet)."""

    since: int = -1


class DashboardFeed(WebSocketHandler[FeedState]):
    """Pushes a snapshot on upgrade and then every ``TICK`` seconds, to those ``access`` lets
    in (403 for anyone else), at most ``max_feeds`` at once (1013 for the next)."""

    def __init__(self, access: DashboardAccess, route: str, max_feeds: int = MAX_FEEDS) -> None:
        self.access = access
        self.route = route
        """The feed's own route pattern: its connections do not count as traffic."""
        self.max_feeds = max_feeds

    def init(self, request: Request) -> InitResult[FeedState]:
        """Upgrade if the request may see the dashboard, else 403."""
        refusal = self.access.feed_refusal(request)
        return Upgrade(FeedState()) if refusal is None else refusal

    def websocket_init(self, state: FeedState) -> Result[FeedState]:
        """The first update at once (it carries the whole history), unless too many feeds
        are open: this one is among them, counted once when it opens."""
        stats = stats_of(actors.current_node())
        if sum(1 for route in stats.open.values() if route == self.route) > self.max_feeds:
            return Close(1013, f"too many dashboard feeds open (at most {self.max_feeds})"), state
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
            node, stats_of(node), history, since=state.since, now=now, feed_route=self.route
        )
        update["code"]["upgradable"] = bool(self.access.token)  # the button needs a token
        actors.start_timer(TICK, _TICK)
        return Text(json.dumps(update, separators=(",", ":"))), FeedState(since=update["seq"])


@attrs.frozen
class DashboardPage:
    """The HTTP handler serving the page to those ``access`` lets in (403 for anyone else);
    a ``?token=`` is traded for a cookie scoped to ``path`` (the dashboard's)."""

    access: DashboardAccess
    path: str

    def __call__(self, request: Request) -> Response:
        """GET/HEAD the page."""
        if request.method not in ("GET", "HEAD"):
            return method_not_allowed(("GET", "HEAD"))
        refusal = self.access.page_refusal(request)
        if refusal is not None:
            return refusal
        redirect = self.access.remembered(request, self.path)
        if redirect is not None:
            return redirect
        return Response(
            200,
            [
                ("Content-Type", "text/html; charset=utf-8"),
                ("Cache-Control", "no-store"),
                ("X-Content-Type-Options", "nosniff"),
                ("X-Frame-Options", "DENY"),
            ],
            page(),
        )

    def exposure_warning(self, path: str) -> str | None:
        """Without a token, the page answers loopback peers, so a reverse proxy on this
        machine would show it to everyone it serves."""
        if self.access.token:
            return None
        return (
            f"the dashboard at {path} has no token: it answers loopback peers only, and a "
            "reverse proxy on this machine would show it to all its clients "
            "(set --dashboard-token or $CORRAL_DASHBOARD_TOKEN)"
        )


@attrs.frozen
class DashboardUpgrade:
    """The upgrade button's HTTP handler: a POST from the dashboard's own page asks the server
    to load its new code (``request_upgrade``: the SIGHUP of ``corral upgrade``). Only with a
    token configured (403 without one), and only for what may open the feed (token, Origin)."""

    access: DashboardAccess

    def __call__(self, request: Request) -> Response:
        """POST: 202 once asked; the feed then shows how the upgrade went."""
        if request.method != "POST":
            return method_not_allowed(("POST",))
        if not self.access.token:
            return forbidden("the upgrade button needs a dashboard token (--dashboard-token)")
        refusal = self.access.feed_refusal(request)
        if refusal is not None:
            return refusal
        target = request_upgrade()
        return Response.text(202, f"upgrade requested (SIGHUP to process {target})")


@functools.cache
def page() -> bytes:
    """The dashboard's HTML (markup, style and script in one file), read once."""
    return resources.files(__package__).joinpath("static", _PAGE).read_bytes()
