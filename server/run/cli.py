"""``corral serve module:app``: run an app under a supervisor until SIGINT/SIGTERM.

The first signal drains (stop accepting, close every connection with 1001, wait for
every terminate up to the drain timeout) and exits 0; a second one exits at once with
status 130 (``EXIT_AT_ONCE``, no terminate runs). SIGHUP (``corral upgrade PID``) loads the
app's new code without dropping a connection (``upgrade``). A bad option value (``option_values``),
TLS file or ``module:app`` exits 2 with one line, and so does a feature whose extra is not
installed (``--redis`` without ``corral[redis]``: one line naming it); a server that cannot run
(the port is taken: ``CannotListen``, an ASGI app's startup failed: ``LifespanFailed``, or its
root supervisor gave up) exits 1 saying why.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import logging
import os
import signal
import ssl
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import attrs
import trio

import actors
from actors import MissingExtra
from actors.broker_url import BadBrokerUrl, parse_broker_url

from ..app import App
from ..front.asgi_lifespan import LifespanFailed
from ..front.listener import make_ssl_context
from ..ops import log_format
from ..ops.dashboard import TOKEN_ENV, with_dashboard
from ..ops.gc_tuning import tune_collector
from ..ops.metrics_endpoint import TOKEN_ENV as METRICS_TOKEN_ENV
from ..ops.metrics_endpoint import metrics_route
from ..ops.metrics_listener import metrics_listener
from ..ops.stats import stats_of
from ..options import ServerOptions
from . import option_values
from .stop_signals import stop_signals
from .supervised import CannotListen, Server, check_port_shareable
from .upgrade import Upgrader
from .workers import (
    Workers,
    drain_when_orphaned,
    upgrade_report_path,
    worker_command,
    worker_index,
)

logger = logging.getLogger("corral.server")


class AppNotFound(Exception):
    """``module:attribute`` does not name an App."""


def load_app(spec: str) -> App:
    """Import ``module:attribute``: an App, or an ASGI app (FastAPI, Starlette...) served
    alone, as ``App(asgi=it)``."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise AppNotFound(f"expected module:attribute (like examples.chat:app), got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except MissingExtra:
        raise
    except Exception as exc:  # the module's own code runs here: any error means a bad module
        raise AppNotFound(option_values.import_failure(module_name, exc)) from exc
    if not hasattr(module, attribute):
        raise AppNotFound(f"module {module_name} has no attribute {attribute!r}")
    app = getattr(module, attribute)
    if isinstance(app, App):
        return app
    if callable(app) and not isinstance(app, type):
        return App(asgi=app)
    raise AppNotFound(f"{spec} is {type(app).__name__}, not a corral App or an ASGI app")


_DESCRIPTION = """\
Run an app under a supervisor until SIGINT or SIGTERM.

The first signal drains: the server stops accepting, closes every connection with
1001, waits for every terminate (up to the drain timeout) and exits 0. A second
signal exits at once with status 130. SIGHUP (corral upgrade PID) loads the
app's new code from disk, dropping no connection. A bad option value, TLS file or
module:attribute (one that does not import, too) exits 2 before anything starts,
saying in one line what is wrong; a server that cannot run (the port is taken, say)
exits 1, naming the address."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the option, the value, what is allowed)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"corral: {message}; see corral serve --help\n")


def _version() -> str:
    """The installed corral's version (pyproject.toml's, the one place it is written)."""
    try:
        return importlib.metadata.version("corral")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return "(not installed: run from a source tree)"


def _parser() -> argparse.ArgumentParser:
    defaults = ServerOptions()
    parser = _Parser(
        prog="corral", description="corral: Erlang/Cowboy-style WebSocket servers on trio."
    )
    parser.add_argument("--version", action="version", version=f"corral {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    upgrade = commands.add_parser(
        "upgrade",
        help="load a running server's new code (corral upgrade --help)",
        description=(
            "Send SIGHUP to a running corral serve: it re-imports its app from disk and moves "
            "every live connection to the new code at its next event (code_change), dropping "
            "none; new code that does not load leaves the old running. The server logs the "
            "result (with --workers, the parent logs each worker's)."
        ),
    )
    upgrade.add_argument("pid", type=int, help="the process id of corral serve (the parent)")
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
        "--port",
        type=option_values.port,
        default=8080,
        help="TCP port to listen on (default: 8080)",
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
        type=option_values.positive_count,
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
        type=option_values.positive_seconds,
        metavar="SECONDS",
        help="time a client gets to send its whole request head "
        f"(default: the app's; {defaults.handshake_timeout:g} unless it sets one)",
    )
    serve.add_argument(
        "--drain-timeout",
        type=option_values.positive_seconds,
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
        "--redis-wait",
        type=float,
        metavar="SECONDS",
        help="wait this long at start-up for --redis to answer, then exit 1 (default: 0, fail "
        "at once; inf: as long as it takes)",
    )
    serve.add_argument(
        "--cluster-prefix",
        metavar="PREFIX",
        help="Redis key prefix of the cluster (default: corral)",
    )
    serve.add_argument(
        "--failure-detection",
        type=option_values.positive_seconds,
        metavar="SECONDS",
        help="with --redis: a node not heard for this long is down, and its users leave "
        f"every member list (default: {defaults.failure_detection:g})",
    )
    serve.add_argument(
        "--workers",
        type=option_values.positive_count,
        metavar="N",
        help="run N worker processes sharing the port (SO_REUSEPORT) under a parent that "
        "restarts them; without --redis each worker has its own names and groups (default: 1)",
    )
    serve.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument(
        "--log-format",
        default="text",
        choices=log_format.FORMATS,
        help="text lines, or one JSON object per line (default: text)",
    )
    serve.add_argument(
        "--metrics", action="store_true", help="serve Prometheus metrics at /metrics (default: off)"
    )
    serve.add_argument(
        "--metrics-address",
        metavar="HOST:PORT",
        help="serve /metrics on this address alone, not on the app's port (implies --metrics)",
    )
    _token_option(
        serve,
        "--metrics-token",
        METRICS_TOKEN_ENV,
        "answer /metrics only with Authorization: Bearer TOKEN",
        "anyone who reaches the port",
    )
    serve.add_argument(
        "--dashboard",
        action="store_true",
        help="serve a live dashboard at /corral/ to loopback, or to requests with the token "
        "(default: off)",
    )
    _token_option(
        serve,
        "--dashboard-token",
        TOKEN_ENV,
        "show the dashboard only with this token, loopback included",
        "loopback only",
    )
    serve.add_argument(
        "--dashboard-host",
        metavar="NAME",
        action="append",
        default=[],
        help="a Host name the dashboard and /metrics answer to besides IP addresses, localhost "
        "and --host (repeatable)",
    )
    serve.add_argument(
        "--dashboard-origin",
        metavar="ORIGIN",
        action="append",
        default=[],
        help="another site (https://ops.example) whose pages may open the dashboard's feed "
        "(repeatable; default: the dashboard's own page only)",
    )
    serve.add_argument(
        "--no-memory-trim",
        action="store_true",
        help="keep freed memory after a burst of connections (default: give it back, glibc)",
    )
    watchdog = serve.add_mutually_exclusive_group()
    watchdog.add_argument(
        "--block-threshold",
        type=option_values.positive_seconds,
        metavar="SECONDS",
        help="log a task step that holds the event loop this long "
        f"(default: the app's; {defaults.block_threshold} unless it sets one)",
    )
    watchdog.add_argument(
        "--no-block-watchdog", action="store_true", help="do not watch for a blocked loop"
    )
    return parser


def _token_option(
    parser: argparse.ArgumentParser, flag: str, env: str, what: str, without: str
) -> None:
    """A ``TOKEN`` option whose default comes from the environment variable ``env``."""
    parser.add_argument(
        flag,
        metavar="TOKEN",
        default=os.environ.get(env),
        help=f"{what} (default: ${env}; none: {without})",
    )


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
            "failure_detection",
        )
        if getattr(args, name) is not None
    }
    if args.redis:
        overrides["redis_url"] = args.redis
    if args.redis_wait is not None:
        overrides["redis_wait"] = args.redis_wait
    if args.block_threshold is not None:
        overrides["block_threshold"] = args.block_threshold
    if args.no_block_watchdog:
        overrides["block_threshold"] = None
    if args.no_memory_trim:
        overrides["memory_trim"] = None
    return attrs.evolve(app.options, **overrides)


def _with_metrics(app: App, args: argparse.Namespace) -> App:
    """``app`` with ``/metrics`` first among its routes; a worker of ``--workers`` serves
    every worker's metrics and writes its own for the others (``worker_metrics``)."""
    from ..ops.worker_metrics import METRICS_DIR_ENV, combined_metrics_route, metrics_writer

    directory = os.environ.get(METRICS_DIR_ENV) if args.worker else None
    access = {"token": args.metrics_token, "hosts": _host_names(args)}
    if directory is None:
        route, children = metrics_route("/metrics", **access), app.children
    else:
        route = combined_metrics_route(Path(directory), **access)
        children = (*app.children, metrics_writer(Path(directory)))
    if args.metrics_address is None:
        return attrs.evolve(app, routes=(route, *app.routes), children=children)
    host, port = _address(args.metrics_address)
    listener = metrics_listener(host, port, route, reuse_port=args.worker)
    return attrs.evolve(app, children=(*children, listener))


def _address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9100`` for IPv6) as a host and a port; ValueError otherwise."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--metrics-address must be HOST:PORT (port 1-65535), not {text!r}")
    return host.strip("[]"), int(port)


def _host_names(args: argparse.Namespace) -> list[str]:
    """The Host names the dashboard and /metrics answer to: ``--dashboard-host`` and
    ``--host``."""
    return [*args.dashboard_host, args.host]


def _run_workers(app: App, args: argparse.Namespace, argv: Sequence[str]) -> int:
    """The parent of ``--workers N``: start them, restart them, pass signals on."""
    try:
        check_port_shareable(args.host, args.port)
    except CannotListen as cannot:
        print(f"corral: {cannot}", file=sys.stderr)
        return 1
    if _options(app, args).redis_url is None and args.workers > 1:
        logger.warning(
            "--workers %d without --redis: each worker has its own names, groups and app "
            "actors (a broadcast or a chat room reaches only that worker's connections)",
            args.workers,
        )
    logger.info("%d workers on %s:%d (SO_REUSEPORT)", args.workers, args.host, args.port)
    if not args.metrics:
        return trio.run(Workers(worker_command(argv), args.workers).run)
    from ..ops.worker_metrics import METRICS_DIR_ENV  # the metrics extra, checked at start-up

    directory = tempfile.mkdtemp(prefix="corral-metrics-")
    os.environ[METRICS_DIR_ENV] = directory  # the workers inherit it
    logger.info("metrics of every worker combined through %s", directory)
    return trio.run(Workers(worker_command(argv), args.workers, scratch=directory).run)


async def _run(server: Server, upgrader: Upgrader, worker: bool = False) -> int:
    """Serve until a signal; drain on the first, exit at once on the second, even while a
    task holds the loop (``stopsignals``; a worker also drains when its parent is gone);
    upgrade at each SIGHUP."""
    draining = trio.Event()
    with stop_signals(draining.set, lambda: stats_of(server.node) if server.node else None):
        async with trio.open_nursery() as nursery:
            await nursery.start(upgrader.on_sighup)
            await nursery.start(server.run)
            # What start-up made lives for good: out of the collector's passes, which are
            # spaced out (shorter pauses, and fewer while connections pile up).
            tune_collector()

            async def drain_when_signalled() -> None:
                await draining.wait()
                await server.shutdown()

            nursery.start_soon(drain_when_signalled)
            if worker:
                nursery.start_soon(drain_when_orphaned, server.shutdown)
            await server.stopped.wait()
            nursery.cancel_scope.cancel()
    return 0


def _send_upgrade(pid: int) -> int:
    """``corral upgrade PID``: SIGHUP to the server, which upgrades and logs how it went."""
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        print(f"corral: cannot signal process {pid}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"corral: asked process {pid} to upgrade (SIGHUP); its log says how it went")
    return 0


def _served(app: App, args: argparse.Namespace) -> App:
    """``app`` with the routes and children the options add (metrics, dashboard)."""
    if args.metrics:
        app = _with_metrics(app, args)
    if args.dashboard:
        app = with_dashboard(
            app,
            token=args.dashboard_token,
            hosts=_host_names(args),
            origins=args.dashboard_origin,
        )
    return app


def _load_extras(options: ServerOptions) -> None:
    """Import the optional libraries ``options`` need now, so that a missing extra stops the
    start-up (``MissingExtra``) instead of the server once it runs."""
    if options.redis_url is not None:
        importlib.import_module("actors.backend_redis")


def main(argv: Sequence[str] | None = None) -> int:
    """The ``corral`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if args.command == "upgrade":
        return _send_upgrade(args.pid)
    args.metrics = args.metrics or args.metrics_address is not None
    try:
        log_format.configure(
            args.log_level, args.log_format, worker=worker_index() if args.worker else None
        )
        _check_cluster_options(args)
        app = load_app(args.app)
        _load_extras(_options(app, args))
        app = _served(app, args)
        if args.keyfile and not args.certfile:
            raise ValueError("--keyfile needs --certfile")
        ssl_context = _tls_context(args.certfile, args.keyfile) if args.certfile else None
        if args.workers is not None and args.port == 0:
            raise ValueError("--workers needs a fixed --port (workers share it)")
        options = _options(app, args)
    except (AppNotFound, MissingExtra, ValueError, OSError) as exc:
        print(f"corral: {exc}", file=sys.stderr)
        return 2
    if args.workers is not None:
        return _run_workers(app, args, argv)
    server = Server(
        app,
        host=args.host,
        port=args.port,
        options=options,
        ssl_context=ssl_context,
        reuse_port=args.worker,
    )
    upgrader = Upgrader(
        server,
        args.app.partition(":")[0],
        lambda: _served(load_app(args.app), args),
        report_to=upgrade_report_path(),
    )
    status = 1
    try:
        status = trio.run(_run, server, upgrader, args.worker)
    except* CannotListen as cannot:
        print(f"corral: {_innermost(cannot)}", file=sys.stderr)
    except* LifespanFailed as failed:
        print(f"corral: {_innermost(failed)}", file=sys.stderr)
    except* actors.RestartIntensityExceeded as gave_up:  # the log already has each crash
        print(f"corral: {_innermost(gave_up)}", file=sys.stderr)
    except* actors.BrokerUnreachable as unreachable:
        print(
            f"corral: {_innermost(unreachable)}: start it, check --redis, or wait for it with "
            "--redis-wait SECONDS",
            file=sys.stderr,
        )
    return status


def _tls_context(certfile: str, keyfile: str | None) -> ssl.SSLContext:
    """The TLS context, or a ValueError naming the file that is missing or not valid PEM."""
    key_option, key_path = ("--keyfile", keyfile) if keyfile else ("--certfile", certfile)
    for option, path, kind in (
        ("--certfile", certfile, option_values.CERTIFICATE),
        (key_option, key_path, option_values.PRIVATE_KEY),
    ):
        try:
            contents = Path(path).read_bytes()
        except OSError as exc:
            raise ValueError(f"{option} {path}: cannot read it ({exc.strerror})") from exc
        problem = option_values.pem_problem(contents, kind)
        if problem is not None:
            raise ValueError(f"{option} {path} {problem}") from None
    try:
        return make_ssl_context(certfile, keyfile)
    except ssl.SSLError as exc:
        try:
            ssl.create_default_context(cafile=certfile)  # parses the certificates alone
        except ssl.SSLError:
            raise ValueError(f"--certfile {certfile} is not a valid certificate ({exc})") from exc
        raise ValueError(
            f"{key_option} {key_path} is not a valid private key, or not the key of "
            f"--certfile {certfile} ({exc})"
        ) from exc


def _check_cluster_options(args: argparse.Namespace) -> None:
    """``--redis`` (or $CORRAL_REDIS_URL) and ``--redis-wait``: ValueError naming the option,
    the value and what is allowed."""
    if args.redis:
        try:
            parse_broker_url(args.redis)
        except BadBrokerUrl as error:
            raise ValueError(f"--redis {error}") from None
    if args.redis_wait is not None and not args.redis_wait >= 0:
        raise ValueError(f"--redis-wait must be a number of seconds >= 0, not {args.redis_wait}")


def _innermost(error: BaseException) -> BaseException:
    """The first exception inside (nested) exception groups."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


if __name__ == "__main__":
    sys.exit(main())
