"""An app: its routes (WebSocket and HTTP on one port) and its own long-lived actors."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from actors import ChildSpec

from .handler import HandlerFactory
from .http import HttpHandler
from .options import ConnectionOptions, ServerOptions
from .router import ConstraintSpec, Route
from .static import StaticFiles


@attrs.frozen
class WebSocketTarget:
    """What a WebSocket route leads to: a handler factory and its connection options."""

    factory: HandlerFactory
    options: ConnectionOptions | None = None


def websocket(
    pattern: str,
    handler: HandlerFactory,
    *,
    constraints: ConstraintSpec = (),
    options: ConnectionOptions | None = None,
) -> Route:
    """A WebSocket route: each connection gets ``handler()`` and runs as an actor."""
    return Route(pattern, WebSocketTarget(handler, options), constraints, kind="websocket")


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
    before it, so they are up when the first client arrives.
    """

    routes: tuple[Route, ...] = attrs.field(converter=_as_tuple)
    children: tuple[ChildSpec, ...] = attrs.field(default=(), converter=_as_tuple)
    options: ServerOptions = ServerOptions()
