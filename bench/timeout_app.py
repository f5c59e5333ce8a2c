"""The echo with an idle timeout of ``$CORRAL_BENCH_IDLE_TIMEOUT`` seconds, for
``timeout_burst.py`` (served by ``common.py``, from whichever checkout ``--tree`` names).

A child actor notes every scheduler pass that took more than ``LONG_PASS`` of the loop
thread's CPU (its ``thread_time``: a pass the OS merely descheduled is not long) and prints
them on stderr once a second, ``PASSES [[wall time at its end, CPU seconds], ...]``.
"""

from __future__ import annotations

import json
import os
import sys
import time

import trio
from timeout_burst import IDLE_ENV

from actors import ChildSpec
from examples.echo import Echo
from server import App, ConnectionOptions, websocket

LONG_PASS = 0.005


class _LongPasses(trio.abc.Instrument):
    """The passes (from the end of one wait for I/O to the next) over ``LONG_PASS``."""

    def __init__(self) -> None:
        self.began = time.thread_time()
        self.long: list[tuple[float, float]] = []

    def after_io_wait(self, timeout: float) -> None:
        self.began = time.thread_time()

    def before_io_wait(self, timeout: float) -> None:
        cpu = time.thread_time() - self.began
        if cpu > LONG_PASS:
            self.long.append((time.time(), cpu))


async def _print_long_passes(actor: object) -> None:
    passes = _LongPasses()
    trio.lowlevel.add_instrument(passes)
    try:
        while True:
            await trio.sleep(1)
            if passes.long:
                print("PASSES " + json.dumps(passes.long), file=sys.stderr, flush=True)
                passes.long = []
    finally:
        trio.lowlevel.remove_instrument(passes)


app = App(
    [
        websocket(
            "/",
            Echo(),
            options=ConnectionOptions(idle_timeout=float(os.environ.get(IDLE_ENV, "15"))),
        )
    ],
    children=[ChildSpec("long passes", _print_long_passes)],
)
