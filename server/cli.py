"""``corral serve module:app``: run an app under a supervisor until SIGINT/SIGTERM.

The first signal drains (stop accepting, close every connection with 1001, wait for
every terminate up to the drain timeout) and exits 0; a second one exits at once with
status 130 (``EXIT_AT_ONCE``, no terminate runs). A bad ``module:app`` exits 2; a server
that cannot run (its root supervisor gave up: the port is taken, say) exits 1 saying why.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from collections.abc import Sequence

import attrs
import trio

import actors

from . import logformat
from .app import App
from .listener import make_ssl_context
from .metrics import metrics_route
from .options import ServerOptions
from .serve import Server

logger = logging.getLogger("corral.server")

EXIT_AT_ONCE = 130


class AppNotFound(Exception):
    """``module:attribute`` does not name an App."""


def load_app(spec: str) -> App:
    """Import ``module:attribute`` and check it is an App."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise AppNotFound(f"expected module:attribute (like examples.chat:app), got {spec!r}")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AppNotFound(f"cannot import {module_name!r}: {exc}") from exc
    app = getattr(module, attribute, None)
    if not isinstance(app, App):
        raise AppNotFound(f"{spec} is {type(app).__name__}, not a corral App")
    return app


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="corral", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run an app")
    serve.add_argument("app", help="module:attribute naming a corral App")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--certfile", help="TLS certificate (PEM): serve wss://")
    serve.add_argument("--keyfile", help="TLS private key (PEM)")
    serve.add_argument("--max-connections", type=int)
    serve.add_argument("--handshake-timeout", type=float)
    serve.add_argument("--drain-timeout", type=float)
    serve.add_argument("--log-format", default="text", choices=logformat.FORMATS)
    serve.add_argument(
        "--metrics", action="store_true", help="serve Prometheus metrics at /metrics"
    )
    watchdog = serve.add_mutually_exclusive_group()
    watchdog.add_argument(
        "--block-threshold",
        type=float,
        metavar="S",
        help="log a task step that holds the loop this long (default 0.1 s)",
    )
    watchdog.add_argument(
        "--no-block-watchdog", action="store_true", help="do not watch for a blocked loop"
    )
    return parser


def _options(app: App, args: argparse.Namespace) -> ServerOptions:
    overrides = {
        name: getattr(args, name)
        for name in ("max_connections", "handshake_timeout", "drain_timeout")
        if getattr(args, name) is not None
    }
    if args.block_threshold is not None:
        overrides["block_threshold"] = args.block_threshold
    if args.no_block_watchdog:
        overrides["block_threshold"] = None
    return attrs.evolve(app.options, **overrides)


def _with_metrics(app: App) -> App:
    """``app`` with ``/metrics`` first among its routes."""
    return attrs.evolve(app, routes=(metrics_route("/metrics"), *app.routes))


async def _run(server: Server) -> int:
    """Serve until a signal; drain on the first, exit at once on the second."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)

            async def watch_signals() -> None:
                draining = False
                async for signum in signals:
                    if draining:
                        logger.warning("second %s: exiting at once", signal.Signals(signum).name)
                        os._exit(EXIT_AT_ONCE)
                    draining = True
                    logger.info("%s: draining", signal.Signals(signum).name)
                    nursery.start_soon(server.shutdown)

            nursery.start_soon(watch_signals)
            await server.stopped.wait()
            nursery.cancel_scope.cancel()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The ``corral`` console script."""
    args = _parser().parse_args(argv)
    logformat.configure(args.log_level, args.log_format)
    try:
        app = load_app(args.app)
        if args.metrics:
            app = _with_metrics(app)
        if args.keyfile and not args.certfile:
            raise ValueError("--keyfile needs --certfile")
        ssl_context = make_ssl_context(args.certfile, args.keyfile) if args.certfile else None
    except (AppNotFound, ValueError, OSError) as exc:
        print(f"corral: {exc}", file=sys.stderr)
        return 2
    server = Server(
        app, host=args.host, port=args.port, options=_options(app, args), ssl_context=ssl_context
    )
    status = 1
    try:
        status = trio.run(_run, server)
    except* actors.RestartIntensityExceeded as gave_up:  # the log already has each crash
        print(f"corral: {_innermost(gave_up)}", file=sys.stderr)
    return status


def _innermost(error: BaseException) -> BaseException:
    """The first exception inside (nested) exception groups."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


if __name__ == "__main__":
    sys.exit(main())
