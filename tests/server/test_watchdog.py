"""The blocked-loop watchdog without a server: its decisions, its reading of a stack dump, and
a task caught holding the loop (the server's own test is in test_metrics)."""

from __future__ import annotations

import faulthandler
import tempfile
import threading
import time

import trio
import trio.testing

from server.tally import Tally
from server.watchdog import (
    LOOK,
    NOTHING,
    POKE,
    BlockWatchdog,
    Holds,
    Stall,
    Verdict,
    describe_frames,
    is_blocked,
    loop_thread_frames,
    watching,
)


def test_a_step_of_the_threshold_counts_as_blocked() -> None:
    assert is_blocked(0.1, 0.1)
    assert not is_blocked(0.099, 0.1)


def test_a_count_that_stops_moving_is_poked_then_looked_at_then_reported_when_it_moves() -> None:
    holds = Holds(1.0)  # sampled every quarter second
    assert holds.sample(0.0, 1) is NOTHING
    assert holds.sample(0.25, 2) is NOTHING
    assert holds.sample(0.5, 2) is POKE  # not moved: idle, or held?
    assert holds.sample(0.75, 2) is LOOK  # the poke did not run: held half the threshold
    assert holds.sample(1.0, 2) is NOTHING
    assert holds.sample(1.25, 2) is NOTHING
    assert holds.sample(1.5, 3) == Verdict(held=1.25)
    assert holds.sample(1.75, 4) is NOTHING


def test_a_step_looked_at_but_shorter_than_the_threshold_is_not_reported() -> None:
    holds = Holds(1.0)
    holds.sample(0.0, 1)
    assert holds.sample(0.25, 1) is POKE
    assert holds.sample(0.5, 1) is LOOK
    assert holds.sample(0.75, 2) is NOTHING  # held three quarters of the threshold


def test_an_idle_loop_answers_each_poke_and_is_never_a_hold() -> None:
    holds = Holds(1.0)
    steps = 0
    for n in range(100):
        if holds.sample(n * 0.25, steps) is POKE:
            steps += 1  # the idle loop runs the poke at once
    assert steps == 50


def test_steps_moving_at_every_sample_are_never_a_hold() -> None:
    holds = Holds(1.0)
    assert {holds.sample(n * 0.25, n) for n in range(100)} == {NOTHING}


DUMP = """\
Thread 0x00007f0000000002 (most recent call first):
  File "/usr/lib/python3.11/threading.py", line 320 in wait
  File "/srv/worker.py", line 9 in loop

Current thread 0x00007f0000000001 (most recent call first):
  File "/srv/app/handlers.py", line 41 in websocket_handle
  File "/srv/corral/server/connection.py", line 301 in run
  File "/srv/corral/server/listener.py", line 163 in handle
  File "/srv/corral/actors/actor.py", line 80 in main
"""


def test_the_frames_of_one_thread_are_read_from_a_dump_innermost_first() -> None:
    assert loop_thread_frames(DUMP, 0x7F0000000001) == [
        ("/srv/app/handlers.py", 41, "websocket_handle"),
        ("/srv/corral/server/connection.py", 301, "run"),
        ("/srv/corral/server/listener.py", 163, "handle"),
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


def _hold_the_loop(seconds: float) -> None:
    time.sleep(seconds)  # the blocking call under test: it must hold the loop for real


async def test_a_task_holding_the_loop_is_counted_with_its_name_and_blocking_line() -> None:
    tally = Tally()

    async def blocker() -> None:
        await trio.testing.wait_all_tasks_blocked()  # the heartbeat and the thread started
        _hold_the_loop(0.2)

    async with watching(0.05, tally):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(blocker, name="blocker")
        with trio.fail_after(5):  # the heartbeat wakes after the stall and reports it
            while not tally.recent_blocked:
                await trio.sleep(0.01)
    assert tally.blocked[""] == 1
    [step] = tally.recent_blocked
    assert step.task == "blocker"
    assert (step.handler, step.route, step.path) == ("-", "", "-")
    assert step.seconds > 0.2 - 0.05 / 4  # timed to within one sample period
    assert step.where.startswith("test_watchdog.py:")
    assert " in _hold_the_loop <- test_watchdog.py:" in step.where


def test_a_hold_by_no_task_is_counted_outside_any_route() -> None:
    tally = Tally()
    BlockWatchdog(0.1, tally).report(0.25, Stall())
    assert tally.blocked[""] == 1
    [step] = tally.recent_blocked
    assert (step.seconds, step.task, step.where) == (0.25, "-", "-")
