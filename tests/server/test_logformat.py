"""The log's two formats: ISO 8601 UTC times and typed fields in JSON, the worker's index on
every line of a ``--workers`` worker, peers as ``host:port``, and Redis client chatter dropped."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from server.front.access_log import peer_text
from server.ops.log_format import formatter, is_library_noise


def _record(name: str, level: int, message: str, **fields: Any) -> logging.LogRecord:
    record = logging.getLogger(name).makeRecord(name, level, __file__, 1, message, (), None)
    for key, value in fields.items():
        setattr(record, key, value)
    return record


def test_json_time_is_iso_8601_in_utc() -> None:
    record = _record("corral.server", logging.INFO, "hello")
    record.created = datetime(2026, 12, 3, 4, 5, 6, 789000, tzinfo=UTC).timestamp()
    fields = json.loads(formatter("json").format(record))
    assert fields["time"] == "2026-12-03T04:05:06.789Z"
    assert datetime.fromisoformat(fields["time"]).utcoffset() == timedelta(0)


def test_json_fields_keep_their_types() -> None:
    record = _record(
        "corral.server", logging.INFO, "closed", code=1000, aborted=False, duration=0.25
    )
    fields = json.loads(formatter("json").format(record))
    assert (fields["code"], fields["aborted"], fields["duration"]) == (1000, False, 0.25)


def test_a_workers_index_is_on_its_lines_in_both_formats() -> None:
    record = _record("corral.server", logging.INFO, "listening", worker=3)
    assert json.loads(formatter("json", worker=3).format(record))["worker"] == 3
    assert " INFO worker=3 corral.server: listening" in formatter("text", worker=3).format(record)
    plain = _record("corral.server", logging.INFO, "listening")
    assert "worker" not in json.loads(formatter("json").format(plain))
    assert "worker" not in formatter("text").format(plain)


@pytest.mark.parametrize(
    ("name", "level", "message", "noise"),
    [
        ("coredis", logging.INFO, "Connection closed unexpectedly!", True),
        ("coredis", logging.ERROR, "Connection attempt failed unexpectedly!", True),
        ("coredis.pool", logging.INFO, "Retry attempt 2 due to error: refused", True),
        ("coredis", logging.WARNING, "Unable to parse the server's answer", False),
        ("corral.server", logging.INFO, "Connection closed unexpectedly!", False),
        ("coredisplay", logging.INFO, "not the Redis client", False),
    ],
)
def test_only_the_redis_clients_chatter_is_noise(
    name: str, level: int, message: str, noise: bool
) -> None:
    assert is_library_noise(_record(name, level, message)) is noise


def test_a_peer_is_written_host_colon_port() -> None:
    assert peer_text(("127.0.0.1", 5000)) == "127.0.0.1:5000"
    assert peer_text(("::1", 5000)) == "[::1]:5000"
    assert peer_text(None) == "?"
