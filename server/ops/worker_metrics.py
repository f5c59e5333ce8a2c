"""``corral serve --workers N --metrics``: one scrape of ``/metrics`` reports every worker.

The metrics are read at scrape time in the process that serves the scrape, so on their own
they would show only that worker. Instead each worker writes its own exposition, once a
second, to a file in a directory the parent made (``CORRAL_METRICS_DIR``, removed when the
parent exits): the worker taking the scrape reads its own metrics fresh and the others' files
(at most a second old), and ``combine`` adds them up, sample by sample. As prometheus_client's
multiprocess mode does for a dead process, a worker that has exited keeps its counters and
histograms in the total (they never go down), while its gauges (connections open...) drop out.
The deepest mailboxes (``corral_mailbox_depth_top``) are kept apart, labelled by worker pid.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator, Sequence
from functools import partial
from pathlib import Path

import attrs
import trio

import actors
from actors import ChildSpec
from actors.extras import MissingExtra

from ..app import http_route
from ..front.router import Route
from .metrics import exposition
from .metrics_endpoint import MetricsEndpoint

try:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import Metric
    from prometheus_client.parser import text_string_to_metric_families
    from prometheus_client.registry import Collector
except ModuleNotFoundError as missing:
    raise MissingExtra("metrics", "Prometheus metrics (--metrics)") from missing

METRICS_DIR_ENV = "CORRAL_METRICS_DIR"
"""Where the workers of one parent write their metrics (set by the parent)."""
WRITE_EVERY = 1.0
"""Seconds between two writes of a worker's own metrics."""
PER_WORKER = frozenset({"corral_mailbox_depth_top"})
"""Families whose samples are labelled by worker rather than added up."""
_SUFFIX = ".prom"


@attrs.frozen
class WorkerExposition:
    """One worker's metrics as text, and whether that worker still runs."""

    worker: str
    text: str
    alive: bool


def combine(expositions: Sequence[WorkerExposition]) -> list[Metric]:
    """The families of every worker, each sample added up over the workers that have it
    (gauges only over live workers; ``PER_WORKER`` families labelled by worker instead)."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for exposed in expositions:
        for family in text_string_to_metric_families(exposed.text):
            if not exposed.alive and family.type in ("gauge", "gaugehistogram"):
                continue
            if family.name not in families:
                families[family.name] = Metric(family.name, family.documentation, family.type)
                values[family.name] = {}
            summed = values[family.name]
            for sample in family.samples:
                labels = dict(sample.labels)
                if family.name in PER_WORKER:
                    labels["worker"] = exposed.worker
                key = (sample.name, tuple(labels.items()))
                summed[key] = summed.get(key, 0.0) + sample.value
    for name, family in families.items():
        for (sample_name, label_pairs), value in values[name].items():
            family.add_sample(sample_name, dict(label_pairs), value)
    return list(families.values())


class _Combined(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def render(families: list[Metric]) -> bytes:
    """The Prometheus text exposition of ``families``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Combined(families))
    return generate_latest(registry)


def _own_file(directory: Path) -> Path:
    return directory / f"{os.getpid()}{_SUFFIX}"


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_suffix(".tmp")
    partial.write_bytes(data)
    os.replace(partial, path)


def _others(directory: Path) -> list[WorkerExposition]:
    """The other workers' last written metrics (blocking: run in a thread)."""
    found = []
    for path in sorted(directory.glob(f"*{_SUFFIX}")):
        pid = int(path.stem)
        if pid == os.getpid():
            continue
        try:
            text = path.read_text()
        except FileNotFoundError:
            continue
        found.append(WorkerExposition(str(pid), text, _is_running(pid)))
    return found


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def metrics_writer(directory: Path) -> ChildSpec:
    """An app child that writes this worker's metrics to ``directory`` every second, and
    once more as it stops (so an exited worker's counters stay in the totals)."""
    return ChildSpec("metrics-writer", _write_every_second, (directory,), kind="metrics-writer")


async def _write_every_second(actor: actors.Actor, directory: Path) -> None:
    path = _own_file(directory)
    try:
        while True:
            data = exposition(actor.node)
            await trio.to_thread.run_sync(_write_atomically, path, data)
            await trio.sleep(WRITE_EVERY)
    finally:
        _write_atomically(path, exposition(actor.node))  # the last word, even when cancelled


def combined_metrics_route(
    directory: Path,
    path: str = "/metrics",
    *,
    token: str | None = None,
    hosts: Collection[str] = (),
) -> Route:
    """A route serving the metrics of every worker writing to ``directory`` (access as
    ``metrics_route``'s)."""
    return http_route(path, MetricsEndpoint(partial(_every_worker, directory), token, hosts))


async def _every_worker(directory: Path) -> bytes:
    own = WorkerExposition(str(os.getpid()), exposition(actors.current_node()).decode(), alive=True)
    others = await trio.to_thread.run_sync(_others, directory)
    return render(combine([own, *others]))
