"""A WebSocket route's actor: ``init`` decides on the upgrade, then the connection runs.

This is the body of every connection actor started by the server's dynamic supervisor;
it owns the client's stream from here on and closes it on every path.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

import actors
from actors import Actor

from . import http
from .connection import serve_connection
from .handler import HandlerFactory, Upgrade, call
from .options import ConnectionOptions
from .termination import Crash
from .upgrade import refuse

logger = logging.getLogger("corral.server")


async def websocket_endpoint(
    actor: Actor,
    stream: trio.abc.Stream,
    head_bytes: bytes,
    request: http.Request,
    factory: HandlerFactory,
    options: ConnectionOptions,
) -> None:
    """Run ``init``; refuse with its response, or upgrade and serve the connection."""
    try:
        handler = factory()
        handler.request = request
        decision = await call(handler.init, request)
        if not isinstance(decision, (Upgrade, http.Response)):
            raise TypeError(f"init must return Upgrade(...) or a Response, not {decision!r}")
    except Exception as exc:
        logger.error("%s: init crashed for %s", actor.address, request.path, exc_info=exc)
        await refuse(stream, http.internal_error())
        return
    if isinstance(decision, http.Response):
        await refuse(stream, decision)
        return
    reason = await _upgrade(actor, stream, head_bytes, request, handler, decision, options)
    if isinstance(reason, Crash):
        actor.exit(actors.Crash(reason.exception))


async def _upgrade(
    actor: Actor,
    stream: trio.abc.Stream,
    head_bytes: bytes,
    request: http.Request,
    handler: Any,
    decision: Upgrade,
    options: ConnectionOptions,
) -> Any:
    if decision.subprotocol is not None and decision.subprotocol not in request.subprotocols:
        logger.error(
            "%s: init chose subprotocol %r, which the client did not offer (%s)",
            actor.address,
            decision.subprotocol,
            request.subprotocols,
        )
        await refuse(stream, http.internal_error())
        return None
    # From here a shutdown is a message (close with 1001, terminate); before, it cancels.
    actor.trap_exits = True
    actor.mailbox.overflow = (decision.options or options).mailbox_overflow
    return await serve_connection(
        actor,
        stream,
        head_bytes,
        request,
        handler,
        decision.state,
        decision.subprotocol,
        decision.headers,
        decision.options or options,
    )
