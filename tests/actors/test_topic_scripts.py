"""What topics on Redis store and publish, checked without a Redis."""

from __future__ import annotations

from actors.topic_rules import Position, Post
from actors.topic_scripts import TopicKeys, pack, parse_published, parse_read, unpack


def test_data_keeps_its_kind_through_the_store() -> None:
    assert unpack(pack("é")) == "é"
    assert unpack(pack(b"\x00\n")) == b"\x00\n"


def test_a_published_post_carries_its_position() -> None:
    payload = b"e1\n42\n" + pack("a\nb")
    assert parse_published("t", payload) == Post("t", Position("e1", 42), "a\nb")


def test_a_read_gives_the_posts_oldest_first_ending_at_the_top() -> None:
    entries = [[b"9-0", [b"d", pack("m9")]], [b"8-0", [b"d", pack("m8")]]]
    snapshot = parse_read("t", [b"e1", 9, entries])
    assert [post.position.offset for post in snapshot.posts] == [8, 9]
    assert [post.data for post in snapshot.posts] == ["m8", "m9"]
    assert snapshot.top == 9 and snapshot.first == 8


def test_a_topics_keys_share_one_hash_tag() -> None:
    meta, log, channel = TopicKeys("p").of("room:lobby")
    assert {key.split("{")[1].split("}")[0] for key in (meta, log, channel)} == {"room:lobby"}
    assert TopicKeys("p").topic_of(channel.encode()) == "room:lobby"
