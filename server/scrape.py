"""``metrics_route``: the Prometheus metrics as an ``App`` route.

The metrics themselves (``server.metrics``) need prometheus_client, the metrics extra; they are
imported when a route is made, so an app without one never loads them, and one with it fails
as it is built, naming the extra (``actors.extras.MissingExtra``) when the library is missing.
"""

from __future__ import annotations

from .app import http_route
from .router import Route


def metrics_route(path: str = "/metrics") -> Route:
    """An ``App`` route serving the server's Prometheus metrics at ``path``."""
    from .metrics import serve_metrics  # the metrics extra: loaded only by an app that asks

    return http_route(path, serve_metrics)
