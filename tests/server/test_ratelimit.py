"""TokenBucket: pure arithmetic on the times it is given, no clock and no sockets."""

from __future__ import annotations

import pytest

from server import TokenBucket


def test_a_new_bucket_allows_a_burst_then_refuses() -> None:
    bucket = TokenBucket(rate=2.0, burst=5)
    assert [bucket.take(100.0) for _ in range(6)] == [True] * 5 + [False]


def test_tokens_come_back_at_the_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=5)
    for _ in range(5):
        assert bucket.take(0.0)
    assert not bucket.take(0.4)  # 0.8 of a token
    assert bucket.take(0.5)  # 1 token
    assert not bucket.take(0.5)
    assert bucket.take(1.5) and bucket.take(1.5)  # 2 more
    assert not bucket.take(1.5)


def test_a_quiet_spell_refills_no_more_than_the_burst() -> None:
    bucket = TokenBucket(rate=10.0, burst=3)
    assert bucket.take(0.0)
    assert bucket.available(3600.0) == 3
    assert [bucket.take(3600.0) for _ in range(4)] == [True, True, True, False]


def test_a_refused_take_costs_nothing() -> None:
    bucket = TokenBucket(rate=1.0, burst=2)
    assert bucket.take(0.0, cost=2)
    for _ in range(100):
        assert not bucket.take(0.5)
    assert bucket.take(1.0)


def test_wait_time_says_when_the_next_token_comes() -> None:
    bucket = TokenBucket(rate=4.0, burst=1)
    assert bucket.wait_time(0.0) == 0.0
    assert bucket.take(0.0)
    assert bucket.wait_time(0.0) == pytest.approx(0.25)
    assert bucket.wait_time(0.125) == pytest.approx(0.125)


def test_time_going_backwards_refills_nothing() -> None:
    bucket = TokenBucket(rate=1.0, burst=1)
    assert bucket.take(10.0)
    assert not bucket.take(5.0)
    assert not bucket.take(10.5)
    assert bucket.take(11.0)


def test_a_full_bucket_says_so() -> None:
    bucket = TokenBucket(rate=1.0, burst=2)
    assert bucket.is_full(0.0)
    bucket.take(0.0)
    assert not bucket.is_full(0.5)
    assert bucket.is_full(1.0)


@pytest.mark.parametrize("rate, burst", [(0, 1), (-1, 1), (1, 0)])
def test_rate_and_burst_must_be_positive(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=rate, burst=burst)
