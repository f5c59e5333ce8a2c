"""The chat's limit decisions as plain data: the per-connection throttle, no sockets, no clock."""

from __future__ import annotations

from examples.chat import ChatLimits
from examples.chat.limits import Throttle, Verdict


def throttle(rate: float = 1.0, burst: int = 3, close_after: int = 4) -> Throttle:
    limits = ChatLimits(message_rate=rate, message_burst=burst, flood_close_after=close_after)
    return Throttle.for_limits(limits)


def test_a_burst_is_accepted_then_the_first_drop_warns_and_the_next_are_quiet() -> None:
    member = throttle()
    verdicts = [member.admit(0.0) for _ in range(6)]
    accepted = [Verdict.ACCEPT] * 3
    assert verdicts == [*accepted, Verdict.WARN, Verdict.DROP, Verdict.DROP]


def test_dropping_close_after_frames_in_a_row_closes() -> None:
    member = throttle(close_after=4)
    verdicts = [member.admit(0.0) for _ in range(3 + 4)]
    assert verdicts[-1] is Verdict.CLOSE
    assert Verdict.CLOSE not in verdicts[:-1]


def test_an_accepted_frame_ends_the_run_of_drops() -> None:
    member = throttle(rate=1.0, burst=1, close_after=3)
    assert member.admit(0.0) is Verdict.ACCEPT
    assert [member.admit(0.1), member.admit(0.2)] == [Verdict.WARN, Verdict.DROP]
    assert member.admit(1.0) is Verdict.ACCEPT
    assert [member.admit(1.1), member.admit(1.2)] == [Verdict.WARN, Verdict.DROP]


def test_a_member_at_the_sustained_rate_is_never_refused() -> None:
    member = throttle(rate=10.0, burst=3)
    assert all(member.admit(step / 10) is Verdict.ACCEPT for step in range(10_000))


def test_the_warning_names_the_rate_and_the_wait() -> None:
    member = throttle(rate=2.0, burst=1)
    member.admit(0.0)
    assert member.admit(0.0) is Verdict.WARN
    reason = member.slow_down(0.0)
    assert reason.startswith("slow down: at most 2 messages a second (bursts of 1)")
    assert "next 0.5 s" in reason
