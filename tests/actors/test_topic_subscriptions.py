"""The subscriber table's one rule, without a node or a socket: hold live posts while catching
up, replay, drop what the replay covered, report a gap, drop who does not take a post."""

from __future__ import annotations

from typing import Any

from actors import Address
from actors.topic_rules import Lagged, Position, Post, Replay, Subscribed
from actors.topics import Subscriber, Subscriptions


class StubNode:
    """Every address is alive; notifications are recorded."""

    def __init__(self) -> None:
        self.notified: list[tuple[Address, Any]] = []

    def actor(self, address: Address) -> object:
        return object()

    def notify(self, address: Address, message: Any) -> bool:
        self.notified.append((address, message))
        return True


def post(offset: int, epoch: str = "e") -> Post:
    return Post("t", Position(epoch, offset), f"m{offset}")


def collect(got: list[Any]) -> Any:
    def deliver(event: Any) -> bool:
        got.append(event)
        return True

    return deliver


def table() -> tuple[Subscriptions, StubNode, list[Subscriber]]:
    node = StubNode()
    gaps: list[Subscriber] = []
    return Subscriptions(node, lambda topic, subscriber: gaps.append(subscriber)), node, gaps  # type: ignore[arg-type]


def test_live_posts_held_during_the_catch_up_are_delivered_once_after_the_replay() -> None:
    subscriptions, _, _ = table()
    got: list[Any] = []
    subscriber = subscriptions.add("t", Address("n", 1), collect(got), None)
    subscriptions.offer(post(3))  # arrives live while the history is read
    subscriptions.offer(post(4))
    replay = Replay(Subscribed("t", Position("e", 1)), [post(2), post(3)], Position("e", 3))
    subscriptions.start("t", subscriber, replay)
    subscriptions.offer(post(5))
    assert [event.position.offset for event in got if isinstance(event, Post)] == [2, 3, 4, 5]
    assert subscriber.last == Position("e", 5)


def test_a_post_after_a_gap_goes_to_the_engine_to_catch_up() -> None:
    subscriptions, _, gaps = table()
    subscriber = subscriptions.add("t", Address("n", 1), lambda event: True, None)
    subscriptions.start(
        "t", subscriber, Replay(Subscribed("t", Position("e", 1)), [], Position("e", 1))
    )
    subscriptions.offer(post(3))
    assert gaps == [subscriber] and subscriber.held == [post(3)]


def test_a_subscriber_that_does_not_take_a_post_is_dropped_and_told_where_it_is() -> None:
    subscriptions, node, _ = table()
    address = Address("n", 1)
    subscriber = subscriptions.add("t", address, lambda event: not isinstance(event, Post), None)
    subscriptions.start(
        "t", subscriber, Replay(Subscribed("t", Position("e", 1)), [], Position("e", 1))
    )
    assert subscriptions.offer(post(2)) == 0
    assert node.notified == [(address, Lagged("t", Position("e", 1)))]
    assert subscriptions.by_topic == {}


def test_a_post_of_a_history_found_gone_is_dropped_after_one_more_look() -> None:
    """A post of epoch "old" arrives once the subscriber is at "new" (published just before its
    topic was dropped): one catch-up to be sure, then it is dropped, never caught up again."""
    subscriptions, _, gaps = table()
    got: list[Any] = []
    subscriber = subscriptions.add("t", Address("n", 1), collect(got), None)
    now = Replay(Subscribed("t", Position("new", 0)), [], Position("new", 0))
    subscriptions.start("t", subscriber, now)
    subscriptions.offer(post(5, "old"))
    assert gaps == [subscriber]  # newer or dead? it looks again
    subscriptions.start("t", subscriber, now)  # the topic is still at "new": "old" is dead
    subscriptions.offer(post(6, "old"))
    assert gaps == [subscriber] and subscriber.held is None
    subscriptions.offer(post(1, "new"))
    assert [event.data for event in got if isinstance(event, Post)] == ["m1"]
