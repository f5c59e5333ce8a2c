"""Combining the workers' metrics (``--workers N --metrics``) without a process: counters and
histograms add up over every worker, gauges over live ones, the deepest mailboxes stay apart."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from server.ops.worker_metrics import WorkerExposition, combine, render


def exposed(
    worker: str, opened: int, open_now: int, top: int, alive: bool = True
) -> WorkerExposition:
    text = f"""\
# HELP corral_connections_opened_total WebSocket connections upgraded
# TYPE corral_connections_opened_total counter
corral_connections_opened_total{{route="/"}} {opened}
# HELP corral_connections_open Upgraded WebSocket connections open now
# TYPE corral_connections_open gauge
corral_connections_open{{route="/"}} {open_now}
# HELP corral_handler_seconds websocket_handle duration
# TYPE corral_handler_seconds histogram
corral_handler_seconds_bucket{{le="0.001"}} {opened}
corral_handler_seconds_bucket{{le="+Inf"}} {opened + 1}
corral_handler_seconds_count {opened + 1}
corral_handler_seconds_sum 0.5
# HELP corral_mailbox_depth_top The deepest mailboxes
# TYPE corral_mailbox_depth_top gauge
corral_mailbox_depth_top{{actor="local.7",kind="actor",name="inbox"}} {top}
"""
    return WorkerExposition(worker, text, alive)


def parsed(data: bytes) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(data.decode())
        for sample in family.samples
    }


def test_counters_histograms_and_gauges_add_up_over_the_workers() -> None:
    samples = parsed(render(combine([exposed("11", 3, 2, 5), exposed("22", 4, 1, 9)])))
    route = frozenset({("route", "/")})
    assert samples["corral_connections_opened_total", route] == 7
    assert samples["corral_connections_open", route] == 3
    assert samples["corral_handler_seconds_bucket", frozenset({("le", "0.001")})] == 7
    assert samples["corral_handler_seconds_bucket", frozenset({("le", "+Inf")})] == 9
    assert samples["corral_handler_seconds_count", frozenset()] == 9
    assert samples["corral_handler_seconds_sum", frozenset()] == 1.0


def test_the_deepest_mailboxes_are_labelled_by_worker_not_added() -> None:
    samples = parsed(render(combine([exposed("11", 3, 2, 5), exposed("22", 4, 1, 9)])))
    top = {
        dict(labels)["worker"]: value
        for (name, labels), value in samples.items()
        if name == "corral_mailbox_depth_top"
    }
    assert top == {"11": 5, "22": 9}


def test_an_exited_worker_keeps_its_counters_but_not_its_gauges() -> None:
    samples = parsed(render(combine([exposed("11", 3, 2, 5), exposed("22", 4, 1, 9, alive=False)])))
    route = frozenset({("route", "/")})
    assert samples["corral_connections_opened_total", route] == 7
    assert samples["corral_connections_open", route] == 2
    assert samples["corral_handler_seconds_count", frozenset()] == 9
    assert [dict(labels)["worker"] for name, labels in samples if "top" in name] == ["11"]
