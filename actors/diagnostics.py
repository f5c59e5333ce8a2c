"""Runtime diagnostics: figures that tell a leak from a steady state.

Leak checks (tests/faults/test_leftovers.py) and the connection-churn soak (bench/soak.py)
compare these counts before and after a burst of work: a count that does not come back to
its baseline is something the work left behind.
"""

from __future__ import annotations

import trio


def live_tasks() -> int:
    """Every trio task alive in this run, counted from the root task: for leak checks and
    soak figures.

    Walks the whole task tree (trio's own system tasks included), so the figure only means
    something against another one taken in the same run. Raises RuntimeError outside a run.
    """
    root = trio.lowlevel.current_root_task()
    if root is None:
        raise RuntimeError("live_tasks() needs a running trio root task")
    count = 0
    pending = [root]
    while pending:
        task = pending.pop()
        count += 1
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return count
