"""live_tasks(): the count of every trio task in the run, as leak checks and the soak use it."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from actors.diagnostics import live_tasks

SLEEPERS = 5


async def test_live_tasks_counts_sleeping_tasks_and_drops_them_when_they_end() -> None:
    before = live_tasks()
    async with trio.open_nursery() as nursery:
        for _ in range(SLEEPERS):
            nursery.start_soon(trio.sleep_forever)
        await trio.testing.wait_all_tasks_blocked()
        assert live_tasks() == before + SLEEPERS
        nursery.cancel_scope.cancel()
    assert live_tasks() == before


def test_live_tasks_outside_a_trio_run_raises() -> None:
    with pytest.raises(RuntimeError):
        live_tasks()
