"""A topic's pure rules: positions, trimming by count and age, resume arithmetic, live order."""

from __future__ import annotations

import pytest

from actors.topic_rules import (
    History,
    Lost,
    Next,
    Position,
    Post,
    Retention,
    Snapshot,
    Subscribed,
    Unrecoverable,
    next_step,
    plan_resume,
)


def history_of(count: int, *, keep: int = 100, age: float = 60.0) -> History:
    history = History("t", "e1", Retention(count=keep, age=age))
    for n in range(1, count + 1):
        history.append(f"m{n}", now=float(n))
    return history


def offsets(posts: object) -> list[int]:
    assert isinstance(posts, tuple | list)
    return [post.position.offset for post in posts]


def test_posts_get_consecutive_offsets_from_one_in_the_epoch() -> None:
    history = History("t", "e1", Retention())
    first = history.append("a", now=0.0)
    second = history.append("b", now=0.0)
    assert first == Post("t", Position("e1", 1), "a")
    assert second.position == Position("e1", 2)


def test_history_keeps_at_most_count_posts() -> None:
    snapshot = history_of(10, keep=3).snapshot(None, now=10.0)
    assert offsets(snapshot.posts) == [8, 9, 10]
    assert snapshot.first == 8 and snapshot.top == 10


def test_history_drops_posts_older_than_the_age_even_without_a_new_post() -> None:
    history = history_of(10, age=5.0)
    assert offsets(history.snapshot(None, now=10.0).posts) == [5, 6, 7, 8, 9, 10]
    empty = history.snapshot(None, now=100.0)
    assert empty.posts == () and empty.first == 11 and empty.top == 10


def test_snapshot_after_a_position_holds_only_the_posts_after_it() -> None:
    history = history_of(10)
    assert offsets(history.snapshot(Position("e1", 7), now=10.0).posts) == [8, 9, 10]
    assert history.snapshot(Position("e1", 10), now=10.0).posts == ()
    assert offsets(history.snapshot(Position("other", 7), now=10.0).posts) == list(range(1, 11))
    assert offsets(history.snapshot(Position("e1", 99), now=10.0).posts) == list(range(1, 11))


def test_retention_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        Retention(count=0)
    with pytest.raises(ValueError):
        Retention(age=0)


def snapshot(first: int, top: int, epoch: str = "e1") -> Snapshot:
    posts = tuple(Post("t", Position(epoch, n), f"m{n}") for n in range(first, top + 1))
    return Snapshot(epoch, top, posts)


def test_no_position_replays_nothing_and_says_where_the_topic_is() -> None:
    replay = plan_resume("t", None, snapshot(5, 9))
    assert replay.answer == Subscribed("t", Position("e1", 9))
    assert replay.posts == () and replay.last == Position("e1", 9)


def test_a_kept_position_replays_exactly_the_posts_after_it() -> None:
    replay = plan_resume("t", Position("e1", 6), snapshot(5, 9))
    assert replay.answer == Subscribed("t", Position("e1", 6))
    assert offsets(replay.posts) == [7, 8, 9]
    assert replay.last == Position("e1", 9)


def test_a_position_just_before_the_oldest_kept_post_is_still_whole() -> None:
    replay = plan_resume("t", Position("e1", 4), snapshot(5, 9))
    assert isinstance(replay.answer, Subscribed)
    assert offsets(replay.posts) == [5, 6, 7, 8, 9]


def test_the_current_position_replays_nothing() -> None:
    replay = plan_resume("t", Position("e1", 9), snapshot(5, 9))
    assert replay.answer == Subscribed("t", Position("e1", 9)) and replay.posts == []


def test_a_position_before_anything_was_posted_resumes_from_the_start() -> None:
    replay = plan_resume("t", Position("e1", 0), snapshot(1, 3))
    assert isinstance(replay.answer, Subscribed) and offsets(replay.posts) == [1, 2, 3]


def test_a_trimmed_offset_is_unrecoverable_with_what_remains() -> None:
    replay = plan_resume("t", Position("e1", 3), snapshot(5, 9))
    assert replay.answer == Unrecoverable(
        "t", Position("e1", 3), Lost.TRIMMED, Position("e1", 4), Position("e1", 9)
    )
    assert offsets(replay.posts) == [5, 6, 7, 8, 9]


def test_an_offset_from_the_future_is_unrecoverable() -> None:
    replay = plan_resume("t", Position("e1", 10), snapshot(5, 9))
    assert isinstance(replay.answer, Unrecoverable) and replay.answer.why is Lost.FUTURE
    assert replay.answer.current == Position("e1", 9)


def test_another_epoch_is_unrecoverable_even_at_a_kept_offset() -> None:
    replay = plan_resume("t", Position("old", 6), snapshot(5, 9))
    assert isinstance(replay.answer, Unrecoverable) and replay.answer.why is Lost.EPOCH
    assert replay.answer.position == Position("e1", 4) and offsets(replay.posts) == [5, 6, 7, 8, 9]


def test_an_empty_topic_after_trimming_by_age_is_still_whole_at_its_top() -> None:
    replay = plan_resume("t", Position("e1", 9), Snapshot("e1", 9, ()))
    assert isinstance(replay.answer, Subscribed)
    trimmed = plan_resume("t", Position("e1", 8), Snapshot("e1", 9, ()))
    assert isinstance(trimmed.answer, Unrecoverable) and trimmed.answer.why is Lost.TRIMMED


@pytest.mark.parametrize(
    ("last", "arrived", "step"),
    [
        (Position("e", 4), Position("e", 5), Next.TAKE),
        (Position("e", 4), Position("e", 4), Next.DUPLICATE),
        (Position("e", 4), Position("e", 2), Next.DUPLICATE),
        (Position("e", 4), Position("e", 6), Next.GAP),
        (Position("e", 4), Position("f", 5), Next.GAP),
    ],
)
def test_a_live_post_is_taken_dropped_as_a_duplicate_or_a_gap(
    last: Position, arrived: Position, step: Next
) -> None:
    assert next_step(last, arrived) is step


def test_subscribe_first_then_replay_then_drop_what_live_delivered_is_exact() -> None:
    """Live posts 7-12 arrive while history up to 10 is read: 7-10 replayed, 11-12 kept once."""
    last = plan_resume("t", Position("e1", 6), snapshot(1, 10)).last
    taken = []
    for offset in range(7, 13):
        step = next_step(last, Position("e1", offset))
        assert step is not Next.GAP
        if step is Next.TAKE:
            last = Position("e1", offset)
            taken.append(offset)
    assert taken == [11, 12]
