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
    Pokes,
    Stall,
    describe_frames,
    is_blocked,
    loop_thread_frames,
    running_task,
    waits_for_io,
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


def test_a_wait_through_steps_of_several_tasks_is_no_hold_of_one() -> None:
    pokes = Pokes(1.0)
    pokes.sample(0.0)
    for task in ("a", "b", "c"):
        pokes.sample(0.5)
        pokes.seen(task)
    assert pokes.answered(1.2) is None
    pokes.sample(2.0)  # the next wait starts afresh
    pokes.seen("a")
    pokes.seen("a")
    assert pokes.answered(3.0) == 1.0


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


def test_a_loop_whose_innermost_frame_is_trios_wait_for_io_is_idle() -> None:
    trio_wait = (trio.__file__.replace("__init__.py", "_core/_io_epoll.py"), 243, "get_events")
    assert waits_for_io([trio_wait, ("/srv/app.py", 3, "main")])
    assert not waits_for_io([("/srv/app.py", 9, "get_events"), trio_wait])  # not trio's
    assert not waits_for_io(loop_thread_frames(DUMP, 0x7F0000000001))
    assert not waits_for_io([])


async def test_an_idle_loop_is_not_woken_so_its_quiet_can_be_waited_for() -> None:
    async with watching(0.04, Tally()):  # samples every 10 ms: a poke would end the quiet
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
    assert step.seconds > 0.2 - 2 * 0.05 / 4  # timed to within a sample period and jitter
    assert step.where.startswith("test_watchdog.py:")
    assert " in _hold_the_loop <- test_watchdog.py:" in step.where


def test_a_hold_by_no_task_is_counted_outside_any_route() -> None:
    tally = Tally()
    BlockWatchdog(0.1, tally).report(0.25, Stall())
    assert tally.blocked[""] == 1
    [step] = tally.recent_blocked
    assert (step.seconds, step.task, step.where) == (0.25, "-", "-")
