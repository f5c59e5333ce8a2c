"""How ``corral serve`` sets Python's cycle collector up for a process full of connections.

Start-up objects (modules, the app) are frozen out of the collector's passes once the server
runs. And a full pass, which walks every object of every open connection, is considered after
100 passes of the middle generation rather than Python's 10: while a burst of connections
opens, the heap grows past the 25% that makes a full pass due many times over, and each of
those passes walks all of it (7 of them, 70% of the collector's time and a quarter of the
server's CPU, while 10,000 connections opened). Garbage cycles still die young in the first
two generations, which keep their defaults; what survives into the oldest waits longer.
"""

from __future__ import annotations

import gc

FULL_PASS_EVERY = 100
"""Middle-generation passes between two looks at whether a full pass is due (Python: 10)."""


def tune_collector() -> None:
    """Freeze what exists now out of every pass, and space the full passes out."""
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_PASS_EVERY)
