"""What one flush sends, as data: messages batched per node, in order, claims located."""

from __future__ import annotations

from actors import Address
from actors import backend_wire as wire
from actors.backend_batch import plan

KEYS = wire.Keys("p")
HERE = Address("here", 1)


def _plan(ops, owned=None):  # type: ignore[no-untyped-def]
    return plan(ops, keys=KEYS, node="here", lease_ms=5000, owned=owned or {})


def test_consecutive_messages_for_one_node_are_one_publish_in_order() -> None:
    batch = _plan([("msg", "b", b"1"), ("msg", "b", b"2"), ("msg", "c", b"3"), ("msg", "b", b"4")])
    assert [(c.name, c.args) for c in batch.commands] == [
        ("publish", ("p:node:b", b"12")),
        ("publish", ("p:node:c", b"3")),
        ("publish", ("p:node:b", b"4")),
    ]
    assert batch.messages == 4


def test_a_claim_is_located_among_the_results_and_a_released_one_is_not_sent() -> None:
    batch = _plan(
        [("msg", "b", b"x"), ("claim", "kept", HERE), ("claim", "gone", HERE)],
        owned={"kept": HERE},
    )
    assert [c.name for c in batch.commands] == ["publish", "claim"]
    assert batch.claims == [("kept", HERE, 1)]
    assert batch.unsent_claims == ["gone"]


def test_a_heartbeat_is_three_commands_however_many_names_the_node_holds() -> None:
    """The names hold while the node's alive key does: idle names cost no command at all."""
    owned = {f"room:{number}": HERE for number in range(1000)}
    batch = _plan([("heartbeat",)], owned=owned)
    assert [c.name for c in batch.commands] == ["set_px", "pexpire", "publish"]
    assert batch.claims == []


def test_a_claim_names_the_holders_node_and_where_alive_keys_live() -> None:
    batch = _plan([("claim", "room:lobby", HERE)], owned={"room:lobby": HERE})
    [claim] = batch.commands
    key, channel, value, alive_prefix, event = claim.args
    assert (key, channel, alive_prefix) == ("p:name:room:lobby", "p:events", "p:alive:")
    assert value.startswith(b"here\n") and wire.holder_of(value) == HERE
    assert list(wire.decode(event, wire.EVENTS)) == [(wire.NAME_CLAIMED, "room:lobby", HERE)]


def test_goodbye_removes_the_node_and_says_bye() -> None:
    batch = _plan([("goodbye",)])
    assert batch.goodbye
    assert batch.commands[0].args == ("p:members:here", "p:alive:here")
    assert list(wire.decode(batch.commands[1].args[1], wire.EVENTS)) == [(wire.BYE, "here")]
