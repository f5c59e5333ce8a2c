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
import tempfile
from collections.abc import Sequence
from pathlib import Path

import attrs
import trio

import actors

from . import logformat
from .app import App
from .collector import prepare_collector
from .dashboard import TOKEN_ENV, with_dashboard
from .listener import make_ssl_context
from .metrics import metrics_route
from .options import ServerOptions
from .serve import Server
from .worker_metrics import METRICS_DIR_ENV, combined_metrics_route, metrics_writer
from .workers import Workers, drain_when_orphaned, worker_command

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
    if not hasattr(module, attribute):
        raise AppNotFound(f"module {module_name} has no attribute {attribute!r}")
    app = getattr(module, attribute)
    if not isinstance(app, App):
        raise AppNotFound(f"{spec} is {type(app).__name__}, not a corral App")
    return app


_DESCRIPTION = """\
Run an app under a supervisor until SIGINT or SIGTERM.

The first signal drains: the server stops accepting, closes every connection with
1001, waits for every terminate (up to the drain timeout) and exits 0. A second
signal exits at once with status 130. A bad module:attribute exits 2; a server
that cannot run (the port is taken, say) exits 1 and says why."""


def _parser() -> argparse.ArgumentParser:
    defaults = ServerOptions()
    parser = argparse.ArgumentParser(
        prog="corral", description="corral: Erlang/Cowboy-style WebSocket servers on trio."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run an app (corral serve --help)",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "app", metavar="module:attribute", help="the App to run, like examples.chat:app"
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)"
    )
    serve.add_argument(
        "--port", type=int, default=8080, help="TCP port to listen on (default: 8080)"
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="least severe log lines written (default: info)",
    )
    serve.add_argument(
        "--certfile", metavar="PEM", help="TLS certificate: serve wss:// (default: plain ws://)"
    )
    serve.add_argument(
        "--keyfile", metavar="PEM", help="TLS private key (default: read from --certfile)"
    )
    serve.add_argument(
        "--max-connections",
        type=int,
        metavar="N",
        help="open connections past which new ones get HTTP 503 "
        f"(default: the app's; {defaults.max_connections} unless it sets one)",
    )
    serve.add_argument(
        "--max-connections-per-address",
        type=int,
        metavar="N",
        help="open connections from one client address (IPv6: /64) past which new ones get "
        f"HTTP 429 (default: the app's; {defaults.max_connections_per_address} unless it sets one)",
    )
    serve.add_argument(
        "--max-heads-per-address",
        type=int,
        metavar="N",
        help="unfinished request heads from one client address past which a new connection is "
        f"closed unread (default: the app's; {defaults.max_heads_per_address} unless it sets one)",
    )
    serve.add_argument(
        "--handshake-timeout",
        type=float,
        metavar="SECONDS",
        help="time a client gets to send its whole request head "
        f"(default: the app's; {defaults.handshake_timeout:g} unless it sets one)",
    )
    serve.add_argument(
        "--drain-timeout",
        type=float,
        metavar="SECONDS",
        help="time connections get to close on shutdown before the rest is cancelled "
        f"(default: the app's; {defaults.drain_timeout:g} unless it sets one)",
    )
    serve.add_argument(
        "--redis",
        metavar="URL",
        default=os.environ.get("CORRAL_REDIS_URL"),
        help="join the cluster on this Redis: names, groups and sends span every server on it "
        "(default: $CORRAL_REDIS_URL; none: this process alone)",
    )
    serve.add_argument(
        "--cluster-prefix",
        metavar="PREFIX",
        help="Redis key prefix of the cluster (default: corral)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="run N worker processes sharing the port (SO_REUSEPORT) under a parent that "
        "restarts them; without --redis each worker has its own names and groups (default: 1)",
    )
    serve.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument(
        "--log-format",
        default="text",
        choices=logformat.FORMATS,
        help="text lines, or one JSON object per line (default: text)",
    )
    serve.add_argument(
        "--metrics", action="store_true", help="serve Prometheus metrics at /metrics (default: off)"
    )
    serve.add_argument(
        "--dashboard",
        action="store_true",
        help="serve a live dashboard at /corral/ to loopback, or to requests with the token "
        "(default: off)",
    )
    serve.add_argument(
        "--dashboard-token",
        metavar="TOKEN",
        default=os.environ.get(TOKEN_ENV),
        help=f"let requests from elsewhere see the dashboard with this token (default: "
        f"${TOKEN_ENV}; none: loopback only)",
    )
    serve.add_argument(
        "--no-memory-trim",
        action="store_true",
        help="keep freed memory after a burst of connections (default: give it back, glibc)",
    )
    watchdog = serve.add_mutually_exclusive_group()
    watchdog.add_argument(
        "--block-threshold",
        type=float,
        metavar="SECONDS",
        help="log a task step that holds the event loop this long "
        f"(default: the app's; {defaults.block_threshold} unless it sets one)",
    )
    watchdog.add_argument(
        "--no-block-watchdog", action="store_true", help="do not watch for a blocked loop"
    )
    return parser


def _options(app: App, args: argparse.Namespace) -> ServerOptions:
    overrides = {
        name: getattr(args, name)
        for name in (
            "max_connections",
            "max_connections_per_address",
            "max_heads_per_address",
            "handshake_timeout",
            "drain_timeout",
            "cluster_prefix",
        )
        if getattr(args, name) is not None
    }
    if args.redis:
        overrides["redis_url"] = args.redis
    if args.block_threshold is not None:
        overrides["block_threshold"] = args.block_threshold
    if args.no_block_watchdog:
        overrides["block_threshold"] = None
    if args.no_memory_trim:
        overrides["memory_trim"] = None
    return attrs.evolve(app.options, **overrides)


def _with_metrics(app: App, worker: bool) -> App:
    """``app`` with ``/metrics`` first among its routes; a worker of ``--workers`` serves
    every worker's metrics and writes its own for the others (``worker_metrics``)."""
    directory = os.environ.get(METRICS_DIR_ENV) if worker else None
    if directory is None:
        return attrs.evolve(app, routes=(metrics_route("/metrics"), *app.routes))
    return attrs.evolve(
        app,
        routes=(combined_metrics_route(Path(directory)), *app.routes),
        children=(*app.children, metrics_writer(Path(directory))),
    )


def _run_workers(app: App, args: argparse.Namespace, argv: Sequence[str]) -> int:
    """The parent of ``--workers N``: start them, restart them, pass signals on."""
    if _options(app, args).redis_url is None and args.workers > 1:
        logger.warning(
            "--workers %d without --redis: each worker has its own names, groups and app "
            "actors (a broadcast or a chat room reaches only that worker's connections)",
            args.workers,
        )
    logger.info("%d workers on %s:%d (SO_REUSEPORT)", args.workers, args.host, args.port)
    if not args.metrics:
        return trio.run(Workers(worker_command(argv), args.workers).run)
    directory = tempfile.mkdtemp(prefix="corral-metrics-")
    os.environ[METRICS_DIR_ENV] = directory  # the workers inherit it
    logger.info("metrics of every worker combined through %s", directory)
    return trio.run(Workers(worker_command(argv), args.workers, scratch=directory).run)


async def _run(server: Server, worker: bool = False) -> int:
    """Serve until a signal; drain on the first, exit at once on the second (a worker also
    drains when its parent is gone)."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)
            # What start-up made lives for good: out of the collector's passes, which are
            # spaced out (shorter pauses, and fewer while connections pile up).
            prepare_collector()

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
            if worker:
                nursery.start_soon(drain_when_orphaned, server.shutdown)
            await server.stopped.wait()
            nursery.cancel_scope.cancel()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The ``corral`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    logformat.configure(args.log_level, args.log_format)
    try:
        app = load_app(args.app)
        if args.metrics:
            app = _with_metrics(app, args.worker)
        if args.dashboard:
            app = with_dashboard(app, token=args.dashboard_token)
        if args.keyfile and not args.certfile:
            raise ValueError("--keyfile needs --certfile")
        ssl_context = make_ssl_context(args.certfile, args.keyfile) if args.certfile else None
        if args.workers is not None and args.workers < 1:
            raise ValueError(f"--workers must be >= 1, not {args.workers}")
        if args.workers is not None and args.port == 0:
            raise ValueError("--workers needs a fixed --port (workers share it)")
    except (AppNotFound, ValueError, OSError) as exc:
        print(f"corral: {exc}", file=sys.stderr)
        return 2
    if args.workers is not None:
        return _run_workers(app, args, argv)
    server = Server(
        app,
        host=args.host,
        port=args.port,
        options=_options(app, args),
        ssl_context=ssl_context,
        reuse_port=args.worker,
    )
    status = 1
    try:
        status = trio.run(_run, server, args.worker)
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
