"""When a node applies a peer's delta and when it asks for a snapshot (pure rules)."""

from __future__ import annotations

from actors.presence_sync import Outgoing, PeerClocks, Verdict, metas_of
from actors.presence_table import Meta


def test_an_unknown_peer_is_synced_first_and_its_deltas_then_apply_in_order() -> None:
    clocks = PeerClocks()
    assert clocks.clock("b", "e1", 4, now=0.0) is Verdict.SYNC
    assert clocks.delta("b", "e1", 5, now=0.1) is Verdict.IGNORE  # the snapshot will hold it
    clocks.snapshot("b", "e1", 5)
    assert clocks.delta("b", "e1", 6, now=0.2) is Verdict.APPLY
    assert clocks.clock("b", "e1", 6, now=1.0) is Verdict.IGNORE


def test_a_gap_in_a_peers_deltas_asks_for_a_snapshot() -> None:
    clocks = PeerClocks()
    clocks.snapshot("b", "e1", 1)
    assert clocks.delta("b", "e1", 3, now=0.0) is Verdict.SYNC


def test_a_clock_ahead_of_what_was_applied_asks_for_a_snapshot() -> None:
    """A delta lost on the way (a Redis restart) shows in the next clock."""
    clocks = PeerClocks()
    clocks.snapshot("b", "e1", 1)
    assert clocks.clock("b", "e1", 2, now=0.0) is Verdict.SYNC


def test_a_new_epoch_asks_for_a_snapshot() -> None:
    clocks = PeerClocks()
    clocks.snapshot("b", "e1", 10)
    assert clocks.delta("b", "e2", 1, now=0.0) is Verdict.SYNC


def test_a_snapshot_not_come_is_asked_for_again() -> None:
    clocks = PeerClocks(resync_after=3.0)
    assert clocks.clock("b", "e1", 1, now=0.0) is Verdict.SYNC
    assert clocks.clock("b", "e1", 1, now=1.0) is Verdict.IGNORE
    assert clocks.clock("b", "e1", 1, now=3.0) is Verdict.SYNC


def test_outgoing_changes_are_net() -> None:
    out = Outgoing()
    out.joined("room", "ann", Meta("a#1", "a", {"tab": 1}))
    out.left("a#1")  # came and went: nothing to send
    out.joined("room", "bob", Meta("a#2", "a", {}))
    out.left("a#0")  # broadcast before: a leave
    assert out.take() == ([["room", "bob", "a#2", {}]], ["a#0"])
    assert not out


def test_junk_entries_and_refs_of_another_node_are_skipped() -> None:
    entries = [["room", "ann", "b#1", {}], ["room", 3, "b#2", {}], ["room", "x", "a#1", {}], 7]
    assert list(metas_of("b", entries)) == [("room", "ann", Meta("b#1", "b", {}))]
    assert list(metas_of("b", "junk")) == []


def test_a_peer_asked_on_meeting_waits_for_its_snapshot() -> None:
    clocks = PeerClocks()
    clocks.ask("b", now=0.0)
    assert clocks.delta("b", "e1", 1, now=0.5) is Verdict.IGNORE
    clocks.snapshot("b", "e1", 1)
    assert clocks.delta("b", "e1", 2, now=0.6) is Verdict.APPLY
