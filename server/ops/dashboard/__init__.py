"""A live dashboard of a running server: ``corral serve --dashboard`` serves it at ``/corral/``.

It shows the supervision tree, the actors by mailbox depth, groups, connections by route,
charts of the last minutes and the blocked-loop watchdog's findings, updated every second over
a WebSocket that corral serves itself. Only loopback requests (no token configured) or
requests carrying the token are let in, under a Host this server answers to, and the feed
only from the page's own origin (403 otherwise; see ``access``).

In an app of your own::

    app = with_dashboard(App([...]), path="/ops/", token=os.environ.get("CORRAL_DASHBOARD_TOKEN"))

or put ``dashboard_routes(...)`` among its routes and ``dashboard_sampler()`` among its
children (without the sampler, the charts fill only while a page is open).
"""

from __future__ import annotations

from collections.abc import Collection

import attrs

from actors import ChildSpec

from ...app import App, http_route, websocket
from ...front.router import Route
from .access import TOKEN_ENV, DashboardAccess
from .handler import MAX_FEEDS, DashboardFeed, DashboardPage, DashboardUpgrade
from .history import sample_every_second
from .snapshot import snapshot

DEFAULT_PATH = "/corral/"


def dashboard_routes(
    path: str = DEFAULT_PATH,
    token: str | None = None,
    *,
    hosts: Collection[str] = (),
    origins: Collection[str] = (),
    max_feeds: int = MAX_FEEDS,
) -> tuple[Route, ...]:
    """The page at ``path``, its live feed at ``path + "live"`` (a WebSocket), and its upgrade
    button's ``path + "upgrade"`` (POST; only with a ``token``).

    ``hosts``: names the dashboard answers to besides IP addresses and localhost (the
    server's own name, say); ``origins``: other sites whose pages may open the feed;
    ``max_feeds``: feeds open at once (past it, 1013).
    """
    base = "/" + path.strip("/")
    feed = f"{base}/live" if base != "/" else "/live"
    access = DashboardAccess(token, hosts, origins)
    upgrade = f"{base}/upgrade" if base != "/" else "/upgrade"
    return (
        websocket(feed, DashboardFeed(access, feed, max_feeds)),
        http_route(upgrade, DashboardUpgrade(access)),
        http_route(base, DashboardPage(access, base)),
    )


def dashboard_sampler() -> ChildSpec:
    """An app child that samples the server every second, so a page opens with history."""
    return ChildSpec("dashboard-sampler", sample_every_second, kind="dashboard-sampler")


def with_dashboard(
    app: App,
    path: str = DEFAULT_PATH,
    token: str | None = None,
    *,
    hosts: Collection[str] = (),
    origins: Collection[str] = (),
    max_feeds: int = MAX_FEEDS,
) -> App:
    """``app`` with the dashboard's routes first (``dashboard_routes``) and its sampler among
    its children."""
    routes = dashboard_routes(path, token, hosts=hosts, origins=origins, max_feeds=max_feeds)
    return attrs.evolve(
        app,
        routes=(*routes, *app.routes),
        children=(*app.children, dashboard_sampler()),
    )


__all__ = [
    "DEFAULT_PATH",
    "MAX_FEEDS",
    "TOKEN_ENV",
    "DashboardAccess",
    "dashboard_routes",
    "dashboard_sampler",
    "snapshot",
    "with_dashboard",
]
