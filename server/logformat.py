"""How ``corral serve`` writes its log: one text line per record, or one JSON object per line.

In JSON (``--log-format json``), each record gives ``time``, ``level``, ``logger`` and
``message``, plus the fields the record carries: a connection's close line has ``peer``,
``path``, ``code``, ``reason`` and ``duration`` (seconds), as in its text line; the
watchdog's line has ``blocked_ms``, ``task``, ``handler``, ``route``, ``path`` and ``where``.
"""

from __future__ import annotations

import logging

from actors.extras import MissingExtra

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def formatter(log_format: str) -> logging.Formatter:
    """The formatter for ``text`` or ``json`` (ValueError for anything else)."""
    if log_format == "text":
        return logging.Formatter(TEXT_FORMAT)
    if log_format == "json":
        try:
            from pythonjsonlogger.json import JsonFormatter
        except ModuleNotFoundError as missing:
            raise MissingExtra("json-logs", "--log-format json") from missing
        return JsonFormatter(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    raise ValueError(f"log format must be one of {FORMATS}, not {log_format!r}")


def configure(level: str, log_format: str = "text") -> None:
    """Send every record at ``level`` and above to stderr in ``log_format``."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(log_format))
    logging.basicConfig(level=level.upper(), handlers=[handler])
