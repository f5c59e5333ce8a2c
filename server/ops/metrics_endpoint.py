"""The ``/metrics`` endpoint: who may scrape it, and its answer.

With a token, a scrape needs ``Authorization: Bearer <token>`` (Prometheus'
``authorization: {credentials: ...}``), loopback included; else 401. Without one, it answers
any scraper whose ``Host`` is an IP address, localhost or a configured name (403 otherwise:
a page whose name an attacker re-points at this machine cannot read it), and a server
listening beyond loopback says so at start-up (``exposure_warnings``).

The metrics themselves (``server.ops.metrics``) need prometheus_client, the metrics extra: they are
imported when a route is made, so an app without one never loads them, and one with it fails
as it is built, naming the extra (``actors.extras.MissingExtra``) when the library is missing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection

import attrs

import actors

from ..app import http_route
from ..front.exposure import bearer_token, host_allowed, same_secret
from ..front.http import Request, Response
from ..front.router import Route

TOKEN_ENV = "CORRAL_METRICS_TOKEN"
"""The environment variable ``corral serve --metrics`` reads the scrapers' token from."""


def _lower_set(values: Collection[str]) -> frozenset[str]:
    return frozenset(value.lower() for value in values)


def metrics_refusal(request: Request, token: str | None, hosts: Collection[str]) -> Response | None:
    """None when the request may read the metrics; else the 401 or 403."""
    if token:
        if same_secret(bearer_token(request), token):
            return None
        return Response.text(
            401,
            "Unauthorized: these metrics need Authorization: Bearer <token>",
            headers=[("WWW-Authenticate", 'Bearer realm="corral metrics"')],
        )
    if host_allowed(request, hosts):
        return None
    return Response.text(
        403,
        f"Forbidden: host {request.header('host')!r} is not a name these metrics answer to "
        "(an IP address, localhost, or one given with --dashboard-host)",
    )


@attrs.frozen
class MetricsEndpoint:
    """An HTTP handler answering with ``render()``'s exposition to those let in."""

    render: Callable[[], Awaitable[bytes]]
    token: str | None = None
    hosts: frozenset[str] = attrs.field(default=frozenset(), converter=_lower_set)

    async def __call__(self, request: Request) -> Response:
        """GET the metrics (or the refusal)."""
        refusal = metrics_refusal(request, self.token, self.hosts)
        if refusal is not None:
            return refusal
        from prometheus_client import CONTENT_TYPE_LATEST  # loaded with the route's metrics

        body = await self.render()
        return Response(200, headers=[("content-type", CONTENT_TYPE_LATEST)], body=body)

    def exposure_warning(self, path: str) -> str | None:
        """Without a token, anyone who reaches the port reads the metrics."""
        if self.token:
            return None
        return (
            f"{path} answers anyone who can reach this port (no token): set --metrics-token "
            f"(or ${TOKEN_ENV}) and give it to Prometheus, or listen on loopback"
        )


def metrics_route(
    path: str = "/metrics", *, token: str | None = None, hosts: Collection[str] = ()
) -> Route:
    """An ``App`` route serving the server's Prometheus metrics at ``path``: to scrapers with
    ``token`` (as a bearer token) if given, else to any under an accepted Host."""
    from .metrics import exposition  # the metrics extra: loaded only by an app that asks

    async def this_server() -> bytes:
        return exposition(actors.current_node())

    return http_route(path, MetricsEndpoint(this_server, token, hosts))
