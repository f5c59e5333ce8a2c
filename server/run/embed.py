"""Run an app inside your own trio program: ``async with serving(app, port=0) as running``.

The server runs for the duration of the block, on the port asked for (0: a free one, which
``running.port`` tells); leaving the block drains it as ``corral serve`` does on SIGTERM
(stop accepting, close connections with 1001, every ``terminate`` runs, the app's actors
stop), so nothing the server started outlives the block::

    async with serving(app, port=0) as running:
        async with trio_websocket.open_websocket_url(running.url("/")) as ws:
            ...
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

import actors

from ..app import App
from ..options import ServerOptions
from .supervised import Server


@attrs.frozen
class Running:
    """A server running inside a ``serving`` block: where it listens, and its node."""

    server: Server
    host: str
    port: int
    """The port it listens on (the free one picked, if asked for port 0)."""

    def url(self, path: str = "/") -> str:
        """The ``ws://`` (or ``wss://``) URL of ``path`` on this server."""
        return f"{self.server.scheme}://{_url_host(self.host)}:{self.port}{path}"

    def http_url(self, path: str = "/") -> str:
        """The ``http://`` (or ``https://``) URL of ``path``, for the app's HTTP routes."""
        scheme = "https" if self.server.ssl_context is not None else "http"
        return f"{scheme}://{_url_host(self.host)}:{self.port}{path}"

    @property
    def node(self) -> actors.Node:
        """The server's actor node: ``whereis``, ``send``, ``publish`` from outside it."""
        assert self.server.node is not None  # set before serving yields
        return self.server.node


@asynccontextmanager
async def serving(
    app: App,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    options: ServerOptions | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[Running]:
    """Run ``app`` on ``host:port`` for the block; drain it on the way out, however it ends
    (cancelled too: the drain is shielded, and bounded by the drain timeout).

    ``options`` replace ``app.options``; ``ssl_context`` serves ``wss://``. Returns once the
    listener accepts. The drain is bounded by ``options.drain_timeout``: past it, what is left
    is cancelled (each upgraded connection still runs ``terminate``). An error in the block
    is raised as it is, after the drain; one from the server (it cannot start: the port is
    taken) comes in an exception group.
    """
    server = Server(app, host=host, port=port, options=options, ssl_context=ssl_context)
    failed: BaseException | None = None  # the block's own error: raised as it is, not grouped
    # The server runs out of reach of a cancellation of the block (which would cut every
    # connection off, 1006): leaving the block, however, is what drains it.
    shielded = trio.CancelScope(shield=True)
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(_run_in, shielded, server)
        try:
            yield Running(server, host, bound)
        except BaseException as exc:
            failed = exc
        finally:
            try:
                with trio.CancelScope(shield=True):
                    await server.shutdown()  # bounded by the drain timeout
            finally:
                shielded.cancel()
    if failed is not None:
        raise failed


async def _run_in(
    scope: trio.CancelScope, server: Server, *, task_status: trio.TaskStatus[int]
) -> None:
    """Run ``server`` inside ``scope``."""
    with scope:
        await server.run(task_status=task_status)


def _url_host(host: str) -> str:
    """``host`` as a URL writes it: a wildcard address as the loopback, IPv6 in brackets."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host
