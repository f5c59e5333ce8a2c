"""``/metrics`` on an address of its own (``--metrics-address``), apart from the app's port.

An app child (``metrics_listener``) listens on ``host:port`` and answers only the metrics
route there (404 for anything else, no WebSocket): the app's port then has no ``/metrics``,
and the scrape port can be kept to an internal interface or a firewall rule.
"""

from __future__ import annotations

import logging

import trio

import actors
from actors import ChildSpec

from ..front.exposure import exposure_warnings
from ..front.http import Request
from ..front.listener import FrontDoor, Serve, open_listeners
from ..front.router import Match, Route, Router
from ..run.supervised import bound_port, shared_port_listeners

logger = logging.getLogger("corral.server")


def metrics_listener(host: str, port: int, route: Route, *, reuse_port: bool = False) -> ChildSpec:
    """An app child serving ``route`` (``metrics_route(...)``) alone on ``host:port``;
    ``reuse_port`` shares the port between the workers of ``--workers``."""
    return ChildSpec(
        "metrics-listener", _serve, (host, port, route, reuse_port), kind="metrics-listener"
    )


async def _serve(actor: actors.Actor, host: str, port: int, route: Route, reuse_port: bool) -> None:
    door = FrontDoor(Router([route]), _no_websocket)
    if reuse_port:
        listeners = await shared_port_listeners(host, port, None)
    else:
        listeners = await open_listeners(host, port)
    logger.info("metrics on http://%s:%d%s", host, bound_port(listeners[0]), route.pattern)
    for warning in exposure_warnings([route], host):
        logger.warning("%s", warning)
    await trio.serve_listeners(door.handle, listeners)


async def _no_websocket(
    stream: trio.abc.Stream, request: Request, rest: bytes, match: Match
) -> Serve | None:
    """Never called: the router holds one HTTP route."""
    raise AssertionError("the metrics listener routes no WebSocket")
