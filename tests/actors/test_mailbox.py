"""The mailbox on its own: arrival order, notifications past the capacity, waking, close."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from actors.address import Address
from actors.mailbox import Mailbox, MailboxPolicy
from actors.messages import Exit, Revocable, TimerRef

OWNER = Address("test", 1)


def mailbox(capacity: int = 2, overflow: MailboxPolicy = MailboxPolicy.DROP_NEWEST) -> Mailbox:
    return Mailbox(OWNER, capacity, overflow, lambda: None)


async def test_messages_and_notifications_come_out_in_arrival_order() -> None:
    box = mailbox()
    box.put_nowait("first")
    box.put_system(Exit(None, "shutdown"))
    box.put_nowait("second")
    got = [await box.get() for _ in range(3)]
    assert got == ["first", Exit(None, "shutdown"), "second"]


async def test_notifications_are_outside_the_capacity() -> None:
    box = mailbox(capacity=1)
    box.put_system(Revocable(TimerRef(), "tick"))
    assert box.put_nowait("fits") is True
    assert box.put_nowait("does not") is False
    assert (len(box), box.dropped) == (2, 1)


def test_wake_on_arrival_calls_back_once_at_the_next_arrival() -> None:
    box = mailbox()
    woken: list[int] = []
    box.wake_on_arrival(lambda: woken.append(len(box)))
    box.put_nowait("first")
    box.put_system("second")
    assert woken == [1]


def test_a_withdrawn_wake_on_arrival_is_not_called() -> None:
    box = mailbox()
    woken: list[str] = []
    box.wake_on_arrival(lambda: woken.append("woken"))
    box.wake_on_arrival(None)
    box.put_nowait("message")
    assert woken == []


async def test_put_waits_for_room_and_close_releases_every_waiting_sender() -> None:
    box = mailbox(capacity=1)
    box.put_nowait("full")
    results: list[bool] = []

    async def put(method: str) -> None:
        results.append(await getattr(box, method)("late"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(put, "put")
        nursery.start_soon(put, "put")
        await trio.testing.wait_all_tasks_blocked()
        assert results == [] and box.statistics().waiting_senders == 2
        box.close()
    assert results == [False, False]
    assert box.statistics().closed and len(box) == 0


async def test_one_receiver_at_a_time_and_a_cancelled_get_frees_the_place() -> None:
    box = mailbox()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(box.get)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await box.get()
        nursery.cancel_scope.cancel()
    with trio.move_on_after(0.01):
        await box.get()
    box.put_nowait("after")
    assert await box.get() == "after"


async def test_a_waiting_receiver_is_woken_by_a_put_and_by_close() -> None:
    box = mailbox()
    got: list[object] = []

    async def receive() -> None:
        got.append(await box.get())
        with pytest.raises(trio.ClosedResourceError):
            await box.get()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        await trio.testing.wait_all_tasks_blocked()
        box.put_nowait("wake")
        await trio.testing.wait_all_tasks_blocked()
        assert got == ["wake"]
        box.close()
    assert box.put_nowait("too late") is False and box.put_system("too late") is False


async def test_revoked_messages_are_skipped_and_envelopes_opened() -> None:
    box = mailbox()
    cancelled, kept = TimerRef(), TimerRef()
    box.put_system(Revocable(cancelled, "cancelled"))
    box.put_system(Revocable(kept, "kept"))
    cancelled.revoked = True
    assert await box.get() == "kept"
    with pytest.raises(trio.WouldBlock):
        box.get_nowait()


async def test_get_is_a_checkpoint_even_when_a_message_is_waiting() -> None:
    box = mailbox()
    box.put_nowait("ready")
    with trio.CancelScope() as scope:
        scope.cancel()
        await box.get()
    assert scope.cancelled_caught and len(box) == 1


async def test_a_notification_of_any_type_is_never_evicted() -> None:
    box = mailbox(capacity=1, overflow=MailboxPolicy.DROP_OLDEST)
    box.put_system("the client left")
    box.put_nowait("old")
    assert box.put_nowait("new") is True
    assert [await box.get(), await box.get()] == ["the client left", "new"]
