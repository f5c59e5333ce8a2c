"""How ``corral serve`` writes its log: one text line per record, or one JSON object per line.

In JSON (``--log-format json``), each record gives ``time`` (ISO 8601, UTC), ``level``,
``logger`` and ``message``, plus the fields the record carries, typed: an HTTP access line has
``peer`` (``host:port``), ``method``, ``path``, ``status`` and ``duration`` (seconds,
``accesslog``); a connection's close line has ``peer``, ``path``, ``code`` (an int),
``aborted``, ``reason`` and ``duration``; the watchdog's line has ``blocked_ms``, ``task``,
``handler``, ``route``, ``path`` and ``where``. A worker of ``--workers`` adds ``worker`` (its
index) to every line, in both formats. Redis client noise is dropped (``is_library_noise``):
the backend logs each outage once, and its end.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from actors.extras import MissingExtra

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
WORKER_TEXT_FORMAT = "%(asctime)s %(levelname)s worker=%(worker)d %(name)s: %(message)s"

_CONNECTION_NOISE = frozenset(
    {"Connection closed unexpectedly!", "Connection attempt failed unexpectedly!"}
)
"""coredis's own lines about its link (with a traceback, or ``NoneType: None``), which the
Redis backend already reports once per outage."""


def is_library_noise(record: logging.LogRecord) -> bool:
    """Whether ``record`` repeats what corral logs itself: coredis's chatter below WARNING,
    and its lines about a lost or failed connection at any level."""
    if record.name != "coredis" and not record.name.startswith("coredis."):
        return False
    return record.levelno < logging.WARNING or record.getMessage() in _CONNECTION_NOISE


def _json_formatter(fields: str) -> logging.Formatter:
    """python-json-logger's formatter of ``fields`` (the ``json-logs`` extra, imported only when
    asked for), its ``time`` ISO 8601 in UTC, to the millisecond."""
    try:
        from pythonjsonlogger.json import JsonFormatter
    except ModuleNotFoundError as missing:
        raise MissingExtra("json-logs", "--log-format json") from missing

    class UtcJsonFormatter(JsonFormatter):
        def formatTime(  # noqa: N802
            self, record: logging.LogRecord, datefmt: str | None = None
        ) -> str:
            moment = datetime.fromtimestamp(record.created, UTC)
            return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    return UtcJsonFormatter(
        fields,
        style="{",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
    )


def formatter(log_format: str, *, worker: int | None = None) -> logging.Formatter:
    """The formatter for ``text`` or ``json`` (ValueError for anything else); ``worker``
    adds the worker's index to every line."""
    if log_format == "text":
        return logging.Formatter(TEXT_FORMAT if worker is None else WORKER_TEXT_FORMAT)
    if log_format == "json":
        fields = "{asctime}{levelname}{name}" + ("" if worker is None else "{worker}")
        return _json_formatter(fields + "{message}")
    raise ValueError(f"log format must be one of {FORMATS}, not {log_format!r}")


def configure(level: str, log_format: str = "text", *, worker: int | None = None) -> None:
    """Send every record at ``level`` and above to stderr in ``log_format``, without library
    noise; ``worker``: the index of this ``--workers`` worker, on every line."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(log_format, worker=worker))
    handler.addFilter(lambda record: not is_library_noise(record))
    if worker is not None:
        handler.addFilter(_WorkerIndex(worker))
    logging.basicConfig(level=level.upper(), handlers=[handler])


class _WorkerIndex(logging.Filter):
    """Stamps each record with the worker's index (``%(worker)d``, JSON ``worker``)."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.index
        return True
