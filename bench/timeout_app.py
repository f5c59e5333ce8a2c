"""The echo with an idle timeout of ``$CORRAL_BENCH_IDLE_TIMEOUT`` seconds, for
``timeout_burst.py`` (served by ``common.py``, from whichever checkout ``--tree`` names)."""

from __future__ import annotations

import os

from timeout_burst import IDLE_ENV

from examples.echo import Echo
from server import App, ConnectionOptions, websocket

app = App(
    [
        websocket(
            "/",
            Echo(),
            options=ConnectionOptions(idle_timeout=float(os.environ.get(IDLE_ENV, "15"))),
        )
    ]
)
