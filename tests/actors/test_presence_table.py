"""The presence table's rules, without a node or a clock: metas per key, diffs per flush."""

from __future__ import annotations

from actors.presence_table import Meta, PresenceDiff, PresenceTable


def meta(ref: str, node: str = "a", **data: object) -> Meta:
    return Meta(ref, node, data)


def test_three_tabs_of_one_user_are_one_presence_with_three_metas() -> None:
    table = PresenceTable()
    for ref in ("a#1", "a#2", "a#3"):
        table.add("room", "ann", meta(ref))
    assert table.count("room") == 1
    assert table.count_metas("room") == 3
    assert [m.ref for m in table.listing("room")["ann"]] == ["a#1", "a#2", "a#3"]


def test_first_join_is_an_arrival_and_last_leave_a_departure() -> None:
    table = PresenceTable()
    table.add("room", "ann", meta("a#1"))
    table.add("room", "ann", meta("a#2"))
    [diff] = table.flush()
    assert diff.arrived == ("ann",) and diff.departed == ()
    assert len(diff.joins["ann"]) == 2
    table.remove("a#1")  # one tab closed: not a leave of ann
    [diff] = table.flush()
    assert diff == PresenceDiff("room", {}, {"ann": [meta("a#1")]}, (), ())
    table.remove("a#2")
    [diff] = table.flush()
    assert diff.departed == ("ann",) and diff.leaves == {"ann": [meta("a#2")]}
    assert table.count("room") == 0 and table.listing("room") == {}


def test_a_join_and_leave_within_one_interval_is_no_diff() -> None:
    table = PresenceTable()
    table.add("room", "ann", meta("a#1"))
    table.remove("a#1")
    assert table.flush() == []
    assert not table.pending


def test_a_diff_is_sized_by_the_changes_not_by_the_members() -> None:
    table = PresenceTable()
    for n in range(1000):
        table.add("room", f"user{n}", meta(f"a#{n}"))
    table.flush()
    table.add("room", "newcomer", meta("a#new"))
    table.remove("a#7")
    [diff] = table.flush()
    assert len(diff) == 2
    assert diff.arrived == ("newcomer",) and diff.departed == ("user7",)


def test_a_nodes_death_is_one_diff_with_all_its_presences() -> None:
    table = PresenceTable()
    table.add("room", "ann", meta("a#1", "a"))
    table.add("room", "ann", meta("b#1", "b"))
    table.add("room", "bob", meta("b#2", "b"))
    table.add("other", "cy", meta("b#3", "b"))
    table.flush()
    assert table.drop_node("b") == 3
    diffs = {diff.topic: diff for diff in table.flush()}
    assert diffs["room"].departed == ("bob",)  # ann still has a tab on node a
    assert diffs["room"].leaves == {"ann": [meta("b#1", "b")], "bob": [meta("b#2", "b")]}
    assert diffs["other"].departed == ("cy",)
    assert table.count("room") == 1 and table.count_metas("room") == 1


def test_replacing_a_nodes_presences_keeps_what_stays_and_announces_the_rest() -> None:
    table = PresenceTable()
    table.add("room", "ann", meta("b#1", "b"))
    table.add("room", "ghost", meta("b#2", "b"))
    table.flush()
    table.replace_node("b", [("room", "ann", meta("b#1", "b")), ("room", "cy", meta("b#3", "b"))])
    [diff] = table.flush()
    assert diff.arrived == ("cy",) and diff.departed == ("ghost",)
    assert "ann" not in diff.joins and "ann" not in diff.leaves


def test_a_new_subscriber_starts_from_the_last_flush() -> None:
    table = PresenceTable()
    table.add("room", "ann", meta("a#1"))
    table.flush()
    table.add("room", "bob", meta("a#2"))
    table.remove("a#1")
    assert table.flushed("room") == {"ann": [meta("a#1")]}  # the next diff applies to this
    [diff] = table.flush()
    assert diff.arrived == ("bob",) and diff.departed == ("ann",)


def test_readding_the_same_ref_is_idempotent() -> None:
    table = PresenceTable()
    table.add("room", "ann", meta("a#1"))
    table.add("room", "ann", meta("a#1"))
    assert table.count_metas("room") == 1 and len(table) == 1
    assert table.remove("a#9") is None
