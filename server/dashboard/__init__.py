"""A live dashboard of a running server: ``corral serve --dashboard`` serves it at ``/corral/``.

It shows the supervision tree, the actors by mailbox depth, groups, connections by route,
charts of the last minutes and the blocked-loop watchdog's findings, updated every second over
a WebSocket that corral serves itself. Only loopback requests and requests carrying the
token are let in (403 otherwise; see ``access``).

In an app of your own::

    app = with_dashboard(App([...]), path="/ops/", token=os.environ.get("CORRAL_DASHBOARD_TOKEN"))

or put ``dashboard_routes(...)`` among its routes and ``dashboard_sampler()`` among its
children (without the sampler, the charts fill only while a page is open).
"""

from __future__ import annotations

import attrs

from actors import ChildSpec

from ..app import App, http_route, websocket
from ..router import Route
from .access import TOKEN_ENV, may_see
from .handler import DashboardFeed, DashboardPage
from .history import sample_every_second
from .snapshot import snapshot

DEFAULT_PATH = "/corral/"


def dashboard_routes(path: str = DEFAULT_PATH, token: str | None = None) -> tuple[Route, ...]:
    """The page at ``path`` and its live feed at ``path + "live"`` (a WebSocket)."""
    base = "/" + path.strip("/")
    feed = f"{base}/live" if base != "/" else "/live"
    handler = DashboardFeed(token, feed)
    return (websocket(feed, lambda: handler), http_route(base, DashboardPage(token)))


def dashboard_sampler() -> ChildSpec:
    """An app child that samples the server every second, so a page opens with history."""
    return ChildSpec("dashboard-sampler", sample_every_second, kind="dashboard-sampler")


def with_dashboard(app: App, path: str = DEFAULT_PATH, token: str | None = None) -> App:
    """``app`` with the dashboard's routes first and its sampler among its children."""
    return attrs.evolve(
        app,
        routes=(*dashboard_routes(path, token), *app.routes),
        children=(*app.children, dashboard_sampler()),
    )


__all__ = [
    "DEFAULT_PATH",
    "TOKEN_ENV",
    "dashboard_routes",
    "dashboard_sampler",
    "may_see",
    "snapshot",
    "with_dashboard",
]
