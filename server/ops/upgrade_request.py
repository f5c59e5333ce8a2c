"""Asking the running server for a hot upgrade from inside it (the dashboard's button).

The request is the same SIGHUP that ``corral upgrade PID`` sends: to this process, or, in a
worker of ``--workers``, to the parent, which passes it to every worker and logs each result.
"""

from __future__ import annotations

import os
import signal

UPGRADES_ENV = "CORRAL_UPGRADE_REPORTS"
"""Set in a worker of ``--workers``: the directory where it writes each upgrade's report for
the parent (see ``server.run.workers``)."""


def request_upgrade() -> int:
    """Send SIGHUP to the process that upgrades this server (its parent, for a worker);
    returns that process's id."""
    target = os.getppid() if UPGRADES_ENV in os.environ else os.getpid()
    os.kill(target, signal.SIGHUP)
    return target
