"""The blocked-loop watchdog without a server: its decisions, its reading of a stack dump
(``loopview``), and a task caught holding the loop (the server's own test is in test_metrics)."""

from __future__ import annotations

import faulthandler
import logging
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable

import trio
import trio.testing

from server.ops.loop_view import Stall, describe_frames, loop_thread_frames, running_task
from server.ops.stats import ServerStats
from server.ops.watchdog import (
    LOOK,
    NOTHING,
    POKE,
    BlockWatchdog,
    IoWaitFlag,
    Pokes,
    is_blocked,
    wants_io_flag,
    watching,
)


def test_a_step_of_the_threshold_counts_as_blocked() -> None:
    assert is_blocked(0.1, 0.1)
    assert not is_blocked(0.099, 0.1)


def test_a_poke_is_sent_then_looked_after_once_it_waits_half_the_threshold() -> None:
    pokes = Pokes(1.0)  # sampled every quarter second
    assert pokes.sample(0.0) is POKE
    assert pokes.sample(0.25) is NOTHING
    assert pokes.sample(0.5) is LOOK  # unanswered for half the threshold: who holds the loop?
    assert pokes.seen("blocker") is True  # the first look: note where
    assert pokes.sample(0.75) is LOOK
    assert pokes.seen("blocker") is False
    assert pokes.answered(1.3) == 1.3
    assert pokes.sample(1.5) is POKE  # a new poke, a new wait


def test_an_answer_under_the_threshold_is_no_hold() -> None:
    pokes = Pokes(1.0)
    pokes.sample(0.0)
    assert pokes.sample(0.5) is LOOK
    pokes.seen("blocker")
    assert pokes.answered(0.75) is None


def test_a_wait_through_steps_of_several_tasks_is_a_hold_by_each_of_them() -> None:
    pokes = Pokes(1.0)
    pokes.sample(0.0)
    firsts = []
    for task in ("a", "a", "b", "c", "d", "b"):
        pokes.sample(0.5)
        firsts.append(pokes.seen(task))
    assert firsts == [True, False, True, True, False, False]  # where: of the first three
    assert pokes.holders == 4
    assert pokes.answered(1.2) == 1.2
    assert pokes.holders == 0  # the next wait starts afresh


def test_a_hold_still_going_on_is_told_at_the_threshold_then_periodically() -> None:
    pokes = Pokes(1.0, still_held_every=10.0)
    pokes.sample(0.0)
    told = [pokes.still_held(now) for now in (0.5, 0.75, 1.0, 1.25, 10.75, 11.0, 20.0, 21.0)]
    assert told == [None, None, 1.0, None, None, 11.0, None, 21.0]
    pokes.answered(21.1)
    assert pokes.still_held(30.0) is None  # no poke out: nothing held


def test_an_idle_loop_answers_each_poke_at_once_and_is_never_looked_at() -> None:
    pokes = Pokes(1.0)
    verdicts = set()
    for n in range(100):
        verdicts.add(pokes.sample(n * 0.25))
        assert pokes.answered(n * 0.25 + 0.0001) is None
    assert verdicts == {POKE}


DUMP = """\
Thread 0x00007f0000000002 (most recent call first):
  File "/usr/lib/python3.11/threading.py", line 320 in wait
  File "/srv/worker.py", line 9 in loop

Current thread 0x00007f0000000001 (most recent call first):
  File "/srv/app/handlers.py", line 41 in websocket_handle
  File "/srv/corral/server/engine/connection.py", line 301 in run
  File "/srv/corral/server/front/listener.py", line 163 in handle
  File "/srv/corral/actors/actor.py", line 80 in main
"""


def test_the_frames_of_one_thread_are_read_from_a_dump_innermost_first() -> None:
    assert loop_thread_frames(DUMP, 0x7F0000000001) == [
        ("/srv/app/handlers.py", 41, "websocket_handle"),
        ("/srv/corral/server/engine/connection.py", 301, "run"),
        ("/srv/corral/server/front/listener.py", 163, "handle"),
        ("/srv/corral/actors/actor.py", 80, "main"),
    ]
    assert loop_thread_frames(DUMP, 0x7F0000000002) == [
        ("/usr/lib/python3.11/threading.py", 320, "wait"),
        ("/srv/worker.py", 9, "loop"),
    ]
    assert loop_thread_frames(DUMP, 0x1234) == []


def test_three_frames_are_described_and_trios_own_are_left_out() -> None:
    frames = loop_thread_frames(DUMP, 0x7F0000000001)
    trio_frame = (trio.__file__, 1, "step")
    assert describe_frames([trio_frame, *frames]) == (
        "handlers.py:41 in websocket_handle <- connection.py:301 in run"
        " <- listener.py:163 in handle"
    )
    assert describe_frames([trio_frame]) == "-"


def test_the_idle_instrument_is_in_while_the_loop_is_quiet_and_out_while_it_is_busy() -> None:
    assert wants_io_flag(installed=False, cpu=0.001, wall=0.1)  # 1% of a core: quiet
    assert not wants_io_flag(installed=True, cpu=0.05, wall=0.1)  # 50%: its cost would show
    assert wants_io_flag(installed=True, cpu=0.007, wall=0.1)  # in between: as it was
    assert not wants_io_flag(installed=False, cpu=0.007, wall=0.1)
    assert not wants_io_flag(installed=True, cpu=0.0, wall=0.0)


async def test_the_io_wait_flag_is_up_only_while_the_loop_waits_for_io() -> None:
    flag = IoWaitFlag()
    trio.lowlevel.add_instrument(flag)
    try:
        assert not flag.waiting  # a task step runs: this one
        seen = await trio.to_thread.run_sync(lambda: flag.waiting)  # the loop waits for it
        assert seen
        assert not flag.waiting
    finally:
        trio.lowlevel.remove_instrument(flag)


async def test_an_idle_loop_is_not_woken_so_its_quiet_can_be_waited_for() -> None:
    async with watching(0.04, ServerStats()):  # samples every 10 ms: a poke would end the quiet
        with trio.fail_after(5):
            await trio.testing.wait_all_tasks_blocked(cushion=0.2)


def _parked(ready: threading.Event, release: threading.Event) -> None:
    ready.set()
    release.wait(10)


def test_a_real_dump_gives_another_threads_frames() -> None:
    ready, release = threading.Event(), threading.Event()
    thread = threading.Thread(target=_parked, args=(ready, release))
    thread.start()
    try:
        ready.wait(10)
        with tempfile.TemporaryFile("w+") as dump:
            faulthandler.dump_traceback(dump, all_threads=True)
            dump.seek(0)
            frames = loop_thread_frames(dump.read(), thread.ident or 0)
    finally:
        release.set()
        thread.join()
    assert [function for _, _, function in frames[:3]] == ["wait", "wait", "_parked"]


async def test_the_running_task_is_found_from_another_thread_while_it_holds_the_loop() -> None:
    root = trio.lowlevel.current_root_task()
    found: list[str | None] = []

    def look_while_held(looked: threading.Event) -> None:
        task = running_task(root)
        found.append(task.name if task is not None else None)
        looked.set()

    async def holder() -> None:
        looked = threading.Event()
        threading.Thread(target=look_while_held, args=(looked,)).start()
        looked.wait(10)  # holds the loop until the other thread has looked

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.sleep_forever)
        nursery.start_soon(holder, name="holder")
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert found == ["holder"]
    assert running_task(root) is trio.lowlevel.current_task()  # seen from the loop: this one


def _hold_the_loop(seconds: float) -> None:
    time.sleep(seconds)  # the blocking call under test: it must hold the loop for real


async def test_a_task_holding_the_loop_is_counted_with_its_name_and_blocking_line() -> None:
    stats = ServerStats()

    async def blocker() -> None:
        await trio.testing.wait_all_tasks_blocked()  # the heartbeat and the thread started
        _hold_the_loop(0.2)

    async with watching(0.05, stats):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(blocker, name="blocker")
        with trio.fail_after(5):  # the heartbeat wakes after the stall and reports it
            while not stats.recent_blocked:
                await trio.sleep(0.01)
    assert stats.blocked[""] == 1
    [step] = stats.recent_blocked
    assert step.task == "blocker"
    assert (step.handler, step.route, step.path) == ("-", "", "-")
    assert step.seconds > 0.2 - 2 * 0.05 / 4  # timed to within a sample period and jitter
    assert step.where.startswith("test_watchdog.py:")
    assert " in _hold_the_loop <- test_watchdog.py:" in step.where


def test_a_hold_by_no_task_is_counted_outside_any_route() -> None:
    stats = ServerStats()
    BlockWatchdog(0.1, stats).report(0.25, [Stall()])
    assert stats.blocked[""] == 1
    [step] = stats.recent_blocked
    assert (step.seconds, step.task, step.where) == (0.25, "-", "-")


class _Lines(logging.Handler):
    """The watchdog's log lines, whatever thread writes them; ``told`` is set at the
    ``count``-th line of a hold still going on."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.count = count
        self.told = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        if sum("so far" in line for line in self.lines) >= self.count:
            self.told.set()


async def _logged_by_watchdog(lines: _Lines, body: Callable[[], Awaitable[None]]) -> None:
    watchdog_log = logging.getLogger("corral.server.watchdog")
    watchdog_log.addHandler(lines)
    try:
        await body()
    finally:
        watchdog_log.removeHandler(lines)


async def test_a_task_that_never_yields_is_told_of_while_it_holds_the_loop() -> None:
    stats = ServerStats()
    lines = _Lines(count=2)

    async def stuck() -> None:
        await trio.testing.wait_all_tasks_blocked()
        lines.told.wait(10)  # stuck until told of twice: the loop cannot answer a poke

    async def watched() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(BlockWatchdog(0.04, stats, still_held_every=0.1).run)
            async with trio.open_nursery() as tasks:
                tasks.start_soon(stuck, name="stuck")
            nursery.cancel_scope.cancel()

    await _logged_by_watchdog(lines, watched)
    assert lines.told.is_set(), lines.lines
    first, second = [line for line in lines.lines if "so far" in line][:2]
    assert first.startswith("loop held for ") and " by stuck (handler -, " in first
    # The whole stack of the task, innermost first, down to its coroutine's first frame.
    assert " at threading.py:" in first and first.endswith(" in stuck")
    assert second.startswith("loop held for ") and " in stuck" in second


async def test_holds_made_of_two_tasks_steps_back_to_back_are_each_reported() -> None:
    stats = ServerStats()
    rounds = 4

    async def blocker(go: trio.Event) -> None:
        await go.wait()
        _hold_the_loop(0.1)

    async with watching(0.04, stats):
        for _ in range(rounds):
            go = trio.Event()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(blocker, go, name="a")
                nursery.start_soon(blocker, go, name="b")
                await trio.testing.wait_all_tasks_blocked(cushion=0.05)  # idle: not poked
                go.set()  # both run in the next pass, one after the other
        with trio.fail_after(5):
            while sum(step.seconds for step in stats.recent_blocked) < rounds * 0.15:
                await trio.sleep(0.01)
    assert len(stats.recent_blocked) >= rounds
    assert {"a", "b"} <= {name for step in stats.recent_blocked for name in step.task.split(", ")}
