"""The pure parts of metrics and log format: no socket, no server."""

from __future__ import annotations

import json
import logging

import pytest

from actors import Address
from server import (
    ClientClosed,
    HandlerCrashed,
    HandlerStopped,
    IdleTimeout,
    ProtocolError,
    ServerShutdown,
    SlowClient,
    TerminateReason,
)
from server.ops.log_format import formatter
from server.ops.stats import Histogram, ServerStats


def test_histogram_buckets_are_cumulative_and_end_with_inf() -> None:
    histogram = Histogram(bounds=(0.01, 0.1))
    for seconds in (0.005, 0.01, 0.05, 2.0):
        histogram.observe(seconds)
    assert histogram.cumulative() == [("0.01", 2), ("0.1", 3), ("+Inf", 4)]
    assert histogram.count == 4
    assert histogram.total == pytest.approx(2.065)


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        (HandlerStopped(), "handler_stopped"),
        (ClientClosed(1000), "client_closed"),
        (IdleTimeout(), "idle_timeout"),
        (ProtocolError(1009), "protocol_error"),
        (HandlerCrashed(RuntimeError()), "handler_crashed"),
        (ServerShutdown(), "server_shutdown"),
        (SlowClient("full", 1013), "slow_client"),
    ],
)
def test_each_terminate_reason_has_a_snake_case_label(reason: TerminateReason, kind: str) -> None:
    assert reason.kind == kind


def test_an_ended_actors_drops_stay_counted_as_last_seen() -> None:
    stats = ServerStats()
    room, other = Address("local", 1), Address("local", 2)
    assert stats.ended_actor_drops({room: 3, other: 1}) == 0
    assert stats.ended_actor_drops({other: 5}) == 3  # room ended with 3 drops
    assert stats.ended_actor_drops({}) == 8


def test_the_json_format_writes_one_object_with_the_records_fields() -> None:
    record = logging.LogRecord(
        "corral.server", logging.INFO, __file__, 1, "closed %s", ("x",), None
    )
    for key, value in {"peer": "127.0.0.1:5", "path": "/", "code": "1000", "duration": 0.5}.items():
        setattr(record, key, value)
    line = formatter("json").format(record)
    assert "\n" not in line
    fields = json.loads(line)
    assert fields["message"] == "closed x"
    assert fields["level"] == "INFO"
    assert fields["logger"] == "corral.server"
    assert {"time", "peer", "path", "code", "duration"} <= fields.keys()


def test_an_unknown_log_format_is_refused() -> None:
    with pytest.raises(ValueError, match="log format must be one of"):
        formatter("xml")
