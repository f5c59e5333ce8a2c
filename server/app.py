"""An app: its routes (WebSocket and HTTP on one port) and its own long-lived actors."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from actors import ChildSpec

from .front.asgi_rules import AsgiApp
from .front.files import StaticFiles
from .front.http import HttpHandler
from .front.router import ConstraintSpec, Route
from .handler import WebSocketHandler, handler_object
from .options import ConnectionOptions, ServerOptions


@attrs.frozen
class WebSocketTarget:
    """What a WebSocket route leads to: its handler object and its connection options."""

    handler: WebSocketHandler[Any]
    options: ConnectionOptions | None = None


def websocket(
    pattern: str,
    handler: WebSocketHandler[Any],
    *,
    constraints: ConstraintSpec = (),
    options: ConnectionOptions | None = None,
) -> Route:
    """A WebSocket route: each connection runs as an actor, with ``handler``'s callbacks
    (one object for all of them: ``websocket("/", MyWsHandler())``) and its own state."""
    target = WebSocketTarget(handler_object(handler, "websocket()"), options)
    return Route(pattern, target, constraints, kind="websocket")


def http_route(pattern: str, handler: HttpHandler, *, constraints: ConstraintSpec = ()) -> Route:
    """A plain HTTP route on the same port (a health check, a page)."""
    return Route(pattern, handler, constraints, kind="http")


def static(prefix: str, directory: str | Path) -> Route:
    """Serve files under ``directory`` at ``prefix`` (``/`` serves index.html)."""
    pattern = prefix.rstrip("/") + "/[...]"
    return Route(pattern, StaticFiles(Path(directory)), kind="http")


def _as_tuple(items: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(items)


@attrs.frozen
class App:
    """What ``corral serve module:app`` runs: routes, the app's actors, and limits.

    ``children`` start (in order) under the same root supervisor as the listener and
    before it, so they are up when the first client arrives. ``asgi``: an ASGI 3.0 app
    (FastAPI, Starlette...) that answers every HTTP request and WebSocket no route takes, on
    the same port; its lifespan starts after ``children`` and shuts down after the connections.
    """

    routes: tuple[Route, ...] = attrs.field(default=(), converter=_as_tuple)
    children: tuple[ChildSpec, ...] = attrs.field(default=(), converter=_as_tuple)
    options: ServerOptions = ServerOptions()
    asgi: AsgiApp | None = None
