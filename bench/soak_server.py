"""The connection-churn soak's server role: the process under test (run as ``soak.py server``).

It serves ``examples.echo:app`` exactly as ``corral serve`` does (``Server``, SIGTERM drains)
and answers each ``stats`` line on its stdin with one JSON line on stdout: RSS after
``gc.collect()``, trio's live task count (``actors.diagnostics.live_tasks()``), live actors, open
connections, and the log records it has seen. bench/soak.py, the driver, starts it and reads
those figures.
"""

from __future__ import annotations

import collections
import gc
import logging
import signal
from typing import Any

import attrs
import psutil  # type: ignore[import-untyped, unused-ignore]
import trio
from stats_pipe import answer_stats_requests, emit

from actors.diagnostics import live_tasks

HOST = "127.0.0.1"
APP = "examples.echo:app"
_EXPECTED_INFO = ("closed ", "listening on ", "drained", "SIGTERM: draining", "memory trim: ")
"""Message prefixes of the INFO records the churn is expected to produce."""


class LogTally(logging.Handler):
    """Counts every record; keeps the unexpected ones (WARNING+, or INFO not in the list)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.closed_by_code: collections.Counter[str] = collections.Counter()
        self.unexpected: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno == logging.INFO and message.startswith("closed "):
            code = message.split(" code=", 1)[1].split(" ", 1)[0]
            self.closed_by_code[code] += 1
        elif record.levelno >= logging.WARNING or not message.startswith(_EXPECTED_INFO):
            if len(self.unexpected) < 100:
                self.unexpected.append(f"{record.levelname} {record.name}: {message}")
            else:
                self.unexpected[-1] = f"... and more ({record.levelname} {message})"


def load_echo_app(idle_timeout: float | None) -> Any:
    """``examples.echo:app``; with ``idle_timeout`` (> 0), its route uses that idle timeout."""
    from server import App, websocket
    from server.app import WebSocketTarget
    from server.run.cli import load_app

    app = load_app(APP)
    if idle_timeout is None:
        return app
    (route,) = app.routes
    assert isinstance(route.target, WebSocketTarget) and route.target.options is not None
    options = attrs.evolve(route.target.options, idle_timeout=idle_timeout)
    return App([websocket(route.pattern, route.target.handler, options=options)])


async def serve_with_stats(port: int, idle_timeout: float | None) -> None:
    """Serve the echo app like ``corral serve``; answer ``stats`` lines on stdin."""
    from server.run.supervised import Server

    tally = LogTally()
    logging.getLogger().addHandler(tally)
    logging.getLogger().setLevel(logging.INFO)
    server = Server(load_echo_app(idle_timeout), host=HOST, port=port)
    process = psutil.Process()

    def stats() -> dict[str, Any]:
        gc.collect()
        node = server.node
        return {
            "rss": process.memory_info().rss,
            "tasks": live_tasks(),
            "actors": len(node.actors()) if node is not None else None,
            "connections": server.connections.count_children(),
            "closed_by_code": dict(tally.closed_by_code),
            "unexpected": tally.unexpected,
        }

    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(server.run)
            emit({"event": "listening", "port": bound})
            nursery.start_soon(answer_stats_requests, stats)

            async def drain_on_signal() -> None:
                async for _ in signals:
                    nursery.start_soon(server.shutdown)
                    return

            nursery.start_soon(drain_on_signal)
            await server.stopped.wait()
            nursery.cancel_scope.cancel()
    emit({"event": "stopped", "closed_by_code": dict(tally.closed_by_code),
           "unexpected": tally.unexpected})  # fmt: skip
