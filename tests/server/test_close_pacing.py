"""The closing turnstile: at most CLOSES_PER_PASS tasks get through per scheduler pass, every
waiting task gets through, and a task that got through holds nothing up afterwards."""

from __future__ import annotations

from collections import Counter

import trio
import trio.lowlevel

from server.engine.close_pacing import CLOSES_PER_PASS, wait_closing_turn

BURST = 5 * CLOSES_PER_PASS + 3


class Passes(trio.abc.Instrument):
    """Counts the scheduler's passes: trio calls ``before_io_wait`` once per pass."""

    def __init__(self) -> None:
        self.count = 0

    def before_io_wait(self, timeout: float) -> None:
        self.count += 1


async def test_a_burst_gets_through_a_bounded_number_per_pass() -> None:
    passes = Passes()
    through: Counter[int] = Counter()

    async def close_one() -> None:
        await wait_closing_turn()
        through[passes.count] += 1

    trio.lowlevel.add_instrument(passes)
    try:
        async with trio.open_nursery() as nursery:
            for _ in range(BURST):
                nursery.start_soon(close_one)
    finally:
        trio.lowlevel.remove_instrument(passes)
    assert sum(through.values()) == BURST
    assert max(through.values()) == CLOSES_PER_PASS
    assert len(through) >= BURST // CLOSES_PER_PASS


async def test_a_task_that_got_through_and_then_waits_blocks_no_one() -> None:
    stuck = trio.Event()
    done = 0

    async def close_slowly() -> None:
        await wait_closing_turn()
        await stuck.wait()  # a client that never answers our close frame

    async def close_one() -> None:
        nonlocal done
        await wait_closing_turn()
        done += 1

    async with trio.open_nursery() as nursery:
        for _ in range(CLOSES_PER_PASS):
            nursery.start_soon(close_slowly)
        for _ in range(BURST):
            nursery.start_soon(close_one)
        with trio.fail_after(5):
            while done < BURST:
                await trio.sleep(0)
        stuck.set()
    assert done == BURST
