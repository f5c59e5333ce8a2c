"""A WebSocket route's actor: ``init`` decides on the upgrade, then the connection runs.

This is the body of every connection actor started by the server's dynamic supervisor;
it owns the client's stream from here on and closes it on every path.
"""

from __future__ import annotations

import logging

import trio

import actors

from ..app import WebSocketTarget
from ..front import http
from ..front.access_log import peer_text
from ..front.eager_io import send_eagerly
from ..front.handshake import accept
from ..front.listener import Serve
from ..front.router import Match
from ..handler import Upgrade, call
from ..ops.stats import stats_of
from ..options import ConnectionOptions
from .connection import Connection
from .inflate import InflateBudget, Inflater
from .session import Session

logger = logging.getLogger("corral.server")


async def websocket_endpoint(
    stream: trio.abc.Stream,
    request: http.Request,
    rest: bytes,
    match: Match,
    *,
    default_options: ConnectionOptions,
    inflate_budget: InflateBudget,
) -> Serve | None:
    """Run ``init``; refuse with its response, or answer 101 and return the connection's
    ``run`` for the caller to await (None when refused or gone).

    Runs in the connection's actor (the front door's ``on_websocket``); ``rest`` is what the
    client sent after its request head: its first frames. The route's own options, if it
    has any, replace ``default_options``; ``inflate_budget`` is the server's, shared by every
    compressed connection. Returning rather than awaiting the connection
    keeps this frame, and what it refers to, off every idle connection's stack.
    """
    actor = actors.current_actor()
    target = match.route.target
    assert isinstance(target, WebSocketTarget)
    try:
        handler = target.handler
        decision = await call(handler.init, request)
        if not isinstance(decision, (Upgrade, http.Response)):
            raise TypeError(f"init must return Upgrade(...) or a Response, not {decision!r}")
    except Exception as exc:
        logger.error("%s: init crashed for %s", actor.address, request.path, exc_info=exc)
        stats_of(actor.node).refused[500] += 1  # metrics
        await http.refuse(stream, http.internal_error())
        return None
    if isinstance(decision, http.Response):
        stats_of(actor.node).refused[decision.status] += 1  # metrics
        await http.refuse(stream, decision)
        return None
    options = decision.options or target.options or default_options
    try:
        accepted = accept(
            request,
            subprotocol=decision.subprotocol,
            extra_headers=decision.headers,
            compression=options.compression,
        )
    except ValueError as exc:
        logger.error("%s: init chose badly: %s", actor.address, exc)
        await http.refuse(stream, http.internal_error())
        return None
    try:
        await send_eagerly(stream, accepted.response)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        logger.debug("%s left before the 101 for %s", peer_text(request.peer), request.path)
        return None
    # From here a shutdown is a message (close with 1001, terminate); before, it cancels.
    actor.trap_exits = True
    actor.mailbox.overflow = options.mailbox_overflow
    inflate = accepted.inflate
    session = Session(
        max_message_size=options.max_message_size,
        max_fragments=options.max_fragments,
        extensions=accepted.extensions,
        inflater=None if inflate is None else Inflater(inflate, inflate_budget),
    )
    if rest:
        session.receive_data(rest)
    connection = Connection(
        actor, handler, request, options, stream, session, decision.state, exit_on_crash=True
    )
    stats_of(actor.node).connection_opened(connection, match.route.pattern)  # metrics
    return connection.run
