"""A WebSocket route's actor: ``init`` decides on the upgrade, then the connection runs.

This is the body of every connection actor started by the server's dynamic supervisor;
it owns the client's stream from here on and closes it on every path.
"""

from __future__ import annotations

import logging

import trio

import actors

from . import http
from .app import WebSocketTarget
from .connection import serve_connection
from .handler import Upgrade, call
from .options import ConnectionOptions
from .router import Match
from .termination import Crash
from .upgrade import refuse

logger = logging.getLogger("corral.server")


async def websocket_endpoint(
    stream: trio.abc.Stream,
    request: http.Request,
    head_bytes: bytes,
    match: Match,
    *,
    default_options: ConnectionOptions,
) -> None:
    """Run ``init``; refuse with its response, or upgrade and serve the connection.

    Runs in the connection's actor (the front door's ``on_websocket``); the route's own
    options, if it has any, replace ``default_options``.
    """
    actor = actors.current_actor()
    target = match.route.target
    assert isinstance(target, WebSocketTarget)
    try:
        handler = target.factory()
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
    if decision.subprotocol is not None and decision.subprotocol not in request.subprotocols:
        logger.error(
            "%s: init chose subprotocol %r, which the client did not offer (%s)",
            actor.address,
            decision.subprotocol,
            request.subprotocols,
        )
        await refuse(stream, http.internal_error())
        return
    options = decision.options or target.options or default_options
    # From here a shutdown is a message (close with 1001, terminate); before, it cancels.
    actor.trap_exits = True
    actor.mailbox.overflow = options.mailbox_overflow
    reason = await serve_connection(actor, stream, head_bytes, request, handler, decision, options)
    if isinstance(reason, Crash):
        actor.exit(actors.Crash(reason.exception))
