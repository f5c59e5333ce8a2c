"""One access line per HTTP request answered, for people (text) and for machines (fields).

The text line reads ``127.0.0.1:50312 GET /chat.css -> 200 in 0.002 s``; under
``--log-format json`` the same record carries ``peer`` (``host:port``), ``method``, ``path``,
``status`` and ``duration`` (seconds) as typed fields.
"""

from __future__ import annotations

import logging

from .exposure import redacted_target
from .http import Request

logger = logging.getLogger("corral.server")


def peer_text(peer: tuple[str, int] | None) -> str:
    """A peer as ``host:port`` (``[v6]:port`` for IPv6), or ``?`` when it is not known."""
    if peer is None:
        return "?"
    host, port = peer
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def log_access(request: Request, status: int, duration: float) -> None:
    """Log that ``request`` was answered with ``status``, ``duration`` seconds after accept
    (secrets in its query, such as the dashboard's token, redacted)."""
    if not logger.isEnabledFor(logging.INFO):
        return  # nothing to format (a busy server logging warnings only)
    peer = peer_text(request.peer)
    logger.info(
        "%s %s %s -> %d in %.3f s",
        peer,
        request.method,
        redacted_target(request.target),
        status,
        duration,
        extra={
            "peer": peer,
            "method": request.method,
            "path": request.path,
            "status": status,
            "duration": round(duration, 3),
        },
    )
