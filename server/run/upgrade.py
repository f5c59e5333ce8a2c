"""Hot code upgrade of a running server: new code from disk, no connection dropped.

``Upgrader.upgrade()`` (SIGHUP, ``corral upgrade``, the dashboard's button) re-imports the app's
package and builds the app again in a thread, while the loop serves on (``actors.reload``); if
either fails, nothing changes and the report says why. Otherwise, between two events of the
loop, the old classes take the new code, the routes become the new app's (``merge_routes``
keeps the old handler object of a route that stays, so what it holds, such as the chat's rooms,
lives on), and every live connection and GenServer moves to the new code at its next event,
through its ``code_change``. The app's children keep running; new ones are not started.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import attrs
import trio

from actors import Node
from actors.code import CODE
from actors.reload import (
    ReloadFailed,
    adopt_modules,
    load_modules,
    package_modules,
    remember_sources,
)

from ..app import App, WebSocketTarget
from ..front.router import Route
from ..ops.stats import stats_of

logger = logging.getLogger("corral.upgrade")


@attrs.frozen
class UpgradeReport:
    """How one upgrade went: ``ok``, the generation the process is at, what changed, and for a
    failed one why (the old code runs on)."""

    ok: bool
    generation: int
    modules: int = 0
    changed: tuple[str, ...] = ()
    """Classes that took new code in place, as ``module.Class old->new`` versions."""
    replaced: tuple[str, ...] = ()
    """Classes whose layout changed: their old instances keep the old class."""
    not_started: tuple[str, ...] = ()
    """Children of the new app that the running one did not have (started at the next start)."""
    error: str | None = None
    seconds: float = 0.0
    """From the request to the switch (the import runs in a thread meanwhile)."""
    held: float = 0.0
    """How long the switch held the loop (classes given new code, routes swapped)."""

    def describe(self) -> str:
        """One line for the log, the CLI and the dashboard."""
        if not self.ok:
            return f"upgrade failed, the old code runs on: {self.error}"
        line = (
            f"upgraded to generation {self.generation}: {self.modules} modules reloaded, "
            f"{len(self.changed)} classes changed in {self.seconds * 1000:.0f} ms (the loop "
            f"held {self.held * 1000:.1f} ms)"
        )
        if self.replaced:
            line += (
                f"; layout changed (old instances keep the old class): {', '.join(self.replaced)}"
            )
        if self.not_started:
            line += f"; new children not started: {', '.join(self.not_started)}"
        return line


def merge_routes(old: Sequence[Route], new: Sequence[Route]) -> tuple[Route, ...]:
    """The new app's routes, each WebSocket or HTTP route that keeps its pattern, kind and
    handler class keeping its old handler object (which holds what the app shares)."""
    kept = {(route.pattern, route.kind): route for route in old}
    return tuple(_keeping_handler(kept.get((route.pattern, route.kind)), route) for route in new)


def _keeping_handler(old: Route | None, new: Route) -> Route:
    if old is None:
        return new
    old_target, new_target = old.target, new.target
    if isinstance(old_target, WebSocketTarget) and isinstance(new_target, WebSocketTarget):
        if _same_class(old_target.handler, new_target.handler):
            return attrs.evolve(new, target=attrs.evolve(new_target, handler=old_target.handler))
        return new
    if _same_class(old_target, new_target):
        return attrs.evolve(new, target=old_target)
    return new


def _same_class(old: object, new: object) -> bool:
    """By name: the new object's class is the freshly imported twin of the old one's."""
    a, b = type(old), type(new)
    return (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)


class Upgradable(Protocol):
    """The running server as an upgrade sees it (``supervised.Server``)."""

    app: App
    node: Node | None

    def adopt(self, app: App) -> None:
        """Serve ``app``'s routes from now on."""
        ...


class Upgrader:
    """Upgrades one server's app: ``module`` names it (``examples.chat``), ``build`` imports
    and builds it (the CLI's ``module:app`` with its dashboard and metrics routes)."""

    def __init__(
        self,
        server: Upgradable,
        module: str,
        build: Callable[[], App],
        report_to: Path | None = None,
    ) -> None:
        self.server = server
        self.module = module
        self.build = build
        self.report_to = report_to
        """A worker of ``--workers`` writes each report there for its parent (``read_report``)."""
        self.reports: list[UpgradeReport] = []
        self._lock = trio.Lock()
        remember_sources(package_modules(module))  # the versions the running code has

    async def upgrade(self, extra: Any = None) -> UpgradeReport:
        """Load the new code and switch to it (one upgrade at a time); never raises for the
        app's own errors, which the report carries (and the log, and the server's stats)."""
        async with self._lock:
            report = await self._upgrade(extra)
        self.reports.append(report)
        if self.server.node is not None:
            stats_of(self.server.node).upgraded(report.ok, report.describe())
        if report.ok:
            logger.info("%s", report.describe())
        else:
            logger.error("%s", report.describe())
        if self.report_to is not None:
            write_report(self.report_to, len(self.reports), report)
        return report

    async def _upgrade(self, extra: Any) -> UpgradeReport:
        started = time.perf_counter()
        names = package_modules(self.module)
        try:
            loaded = await trio.to_thread.run_sync(load_modules, names, self.build)
        except ReloadFailed as failed:
            return UpgradeReport(False, CODE.generation, error=str(failed))
        switching = time.perf_counter()
        reloaded = adopt_modules(loaded, extra)
        running, app = self.server.app, loaded.built
        self.server.adopt(attrs.evolve(app, routes=merge_routes(running.routes, app.routes)))
        held = time.perf_counter() - switching
        running_ids = {spec.id for spec in running.children}
        changed = tuple(
            f"{cls.__module__}.{cls.__qualname__} {change.old_version}->{change.new_version}"
            for cls, change in reloaded.upgrade.changes.items()
        )
        return UpgradeReport(
            True,
            reloaded.upgrade.generation,
            modules=len(reloaded.modules),
            changed=changed,
            replaced=reloaded.replaced,
            not_started=tuple(s.id for s in app.children if s.id not in running_ids),
            seconds=time.perf_counter() - started,
            held=held,
        )

    async def on_sighup(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Upgrade at every SIGHUP (rather than die of it, its default), until cancelled."""
        with trio.open_signal_receiver(signal.SIGHUP) as signals:
            task_status.started()
            async for _ in signals:
                logger.info("SIGHUP: upgrading")
                await self.upgrade()


def write_report(path: Path, count: int, report: UpgradeReport) -> None:
    """Write a worker's ``count``-th report where its parent reads it (atomically)."""
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps({"count": count, "ok": report.ok, "line": report.describe()}))
    partial.replace(path)


def read_report(path: Path) -> tuple[int, bool, str]:
    """A worker's last report as ``(count, ok, line)``; count 0 if it has written none."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return 0, False, ""
    return int(data["count"]), bool(data["ok"]), str(data["line"])
