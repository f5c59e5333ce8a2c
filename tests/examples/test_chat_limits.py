"""The chat's limit decisions as plain data: the per-connection throttle, no sockets, no clock."""

from __future__ import annotations

from examples.chat import ChatLimits
from examples.chat.budget import HistoryBudget
from examples.chat.limits import PeerCount, PeerQuota, Throttle, Verdict, peer_key


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


# ---- the history budget ----------------------------------------------------------------------


def test_the_budget_evicts_parked_rooms_least_recently_used_first() -> None:
    budget = HistoryBudget(limit=250)
    for room in ("a", "b", "c"):
        budget.update(room, 100)
        budget.park(room)
    budget.park("a")  # used again: now the most recent
    assert budget.evictions() == ["b"]
    assert budget.excess() == 0 and budget.evicting == 1
    budget.forget("b")
    assert budget.total == 200 and budget.evicting == 0


def test_rooms_with_members_are_never_evicted_only_asked_to_shed() -> None:
    budget = HistoryBudget(limit=250)
    budget.update("parked", 100)
    budget.park("parked")
    budget.update("busy", 300)
    assert budget.evictions() == ["parked"]
    assert budget.excess() == 50  # what "busy" must shed once "parked" has gone


def test_a_room_that_is_joined_again_is_spared() -> None:
    budget = HistoryBudget(limit=100)
    budget.update("a", 80)
    budget.park("a")
    budget.update("b", 80)
    budget.unpark("a")
    assert budget.evictions() == [] and budget.excess() == 60


def test_evict_one_takes_the_oldest_parked_room_once() -> None:
    budget = HistoryBudget(limit=10**9)
    for room in ("a", "b"):
        budget.update(room, 1)
        budget.park(room)
    assert [budget.evict_one(), budget.evict_one(), budget.evict_one()] == ["a", "b", None]


def test_the_budget_total_follows_updates_and_forgets() -> None:
    budget = HistoryBudget(limit=1000)
    budget.update("a", 300)
    budget.update("a", 200)
    budget.update("b", 50)
    assert budget.total == 250
    budget.forget("a")
    budget.forget("never-seen")
    assert budget.total == 50 and budget.size("a") == 0


# ---- per-peer quotas ----------------------------------------------------------------------


def test_a_peer_quota_is_per_peer() -> None:
    quota = PeerQuota(rate=1.0, burst=2)
    assert [quota.take("10.0.0.1", 0.0) for _ in range(3)] == [True, True, False]
    assert quota.take("10.0.0.2", 0.0)
    assert quota.take("10.0.0.1", 1.0)


def test_a_peer_quota_forgets_peers_whose_bucket_is_full_again() -> None:
    quota = PeerQuota(rate=1.0, burst=1)
    for number in range(1023):
        quota.take(f"peer-{number}", 0.0)
    quota.take("late", 5.0)  # the 1024th peer: prune, the others are full again by now
    assert len(quota) == 1


def test_peer_keys_are_addresses_and_ipv6_counts_by_its_64() -> None:
    assert peer_key(("127.0.0.1", 5000)) == "127.0.0.1"
    assert peer_key(("2001:db8::1", 1)) == peer_key(("2001:db8::ffff:2", 2)) == "2001:db8::/64"
    assert peer_key(("::ffff:10.1.2.3", 1)) == "10.1.2.3"
    assert peer_key(None) == "unknown"


def test_a_peer_count_caps_each_peer_and_frees_on_release() -> None:
    count = PeerCount(limit=2)
    assert [count.acquire("a"), count.acquire("a"), count.acquire("a")] == [True, True, False]
    assert count.acquire("b")
    count.release("a")
    assert count.held("a") == 1 and count.acquire("a")
    count.release("b")
    assert count.held("b") == 0
