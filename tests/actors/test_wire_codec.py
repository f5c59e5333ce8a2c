"""The cluster wire as data only: what may cross round-trips, everything else is refused."""

from __future__ import annotations

import dataclasses
import pathlib
import pickle
import struct
from typing import Any

import attrs
import hypothesis.strategies as st
import msgpack
import pytest
from hypothesis import given

import actors
from actors import Address
from actors import backend_wire as wire
from actors import wire_codec as codec
from tests.actors.kit import Marker

HERE = Address("here", 7, "room")
THERE = Address("there", 9)


@actors.wire_type
@attrs.frozen
class Said:
    """An app's message with a private field, a keyword-only one and a validator."""

    _nick: str = attrs.field(validator=attrs.validators.instance_of(str))
    text: str
    to: tuple[Address, ...] = attrs.field(default=(), kw_only=True)


@actors.wire_type
@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


@actors.wire_type
@attrs.frozen
class Ping:
    """No fields at all."""


@attrs.frozen
class Unregistered:
    value: int


REASONS = [
    actors.NORMAL,
    actors.SHUTDOWN,
    actors.KILLED,
    actors.MAILBOX_OVERFLOW,
    actors.NOPROC,
    actors.NOCONNECTION,
]

PORTABLE_VALUES: list[Any] = [
    None,
    True,
    -(2**63),
    2**64 - 1,
    1.5,
    "text é",
    b"\x00bytes",
    [1, [2, (3, 4)]],
    (1, "a", None),
    (),
    {"a": 1, (1, 2): [3], 3: b"x"},
    HERE,
    THERE,
    Said("ann", "hello", to=(HERE, THERE)),
    Point(1, 2),
    Ping(),
    actors.Exit(HERE, actors.SHUTDOWN),
    actors.Exit(None, actors.KILLED),
    *REASONS,
]


@pytest.mark.parametrize("value", PORTABLE_VALUES, ids=repr)
def test_plain_data_and_registered_types_round_trip_with_their_types(value: Any) -> None:
    back = codec.unpack(codec.pack(value))
    assert back == value
    assert type(back) is type(value)


def test_a_crash_crosses_as_the_exception_type_name_and_text() -> None:
    (back,) = codec.unpack(codec.pack([actors.Crash(ValueError("bad input"))]))
    assert isinstance(back, actors.Crash)
    assert isinstance(back.exception, actors.RemoteError)
    assert (back.exception.type_name, back.exception.text) == ("ValueError", "bad input")
    assert codec.unpack(codec.pack(back)).exception.type_name == "ValueError"  # relayed as is


def test_an_exit_reason_of_an_unregistered_class_becomes_a_portable_crash() -> None:
    @attrs.frozen(str=False)
    class Custom(actors.ExitReason):
        pass

    reason = wire.portable(Custom())
    assert isinstance(reason, actors.Crash) and "Custom" in str(reason.exception)
    assert wire.portable(actors.SHUTDOWN) == actors.SHUTDOWN


ENVELOPES = [
    (wire.SEND, HERE, Said("ann", "hi")),
    (wire.NOTIFY, HERE, "tick"),
    (wire.PUBLISH, "corral.frames", "chat:lobby", "frame"),
    (wire.PUBLISH, "corral.frame", HERE, b"frame"),
    (wire.MONITOR, 3, HERE, THERE),
    (wire.DEMONITOR, 3, HERE, THERE),
    (wire.DOWN, 3, HERE, THERE, actors.NOPROC),
    (wire.EXIT, THERE, actors.KILLED),
    (wire.LINK, HERE, THERE),
    (wire.UNLINK, HERE, THERE),
    (wire.LINKED_EXIT, HERE, THERE, actors.NORMAL),
]
EVENTS = [
    (wire.HELLO, "a"),
    (wire.HEARTBEAT, "a"),
    (wire.BYE, "a"),
    (wire.NAME_CLAIMED, "name", HERE),
    (wire.NAME_RELEASED, "name", HERE),
    (wire.JOINED, "group", HERE, "a"),
    (wire.LEFT, "group", HERE, "a"),
]


def test_every_envelope_kind_survives_a_batch_in_order() -> None:
    batch = b"".join(wire.encode(envelope) for envelope in ENVELOPES)
    assert list(wire.decode(batch, wire.ENVELOPES)) == ENVELOPES
    events = b"".join(wire.encode(event) for event in EVENTS)
    assert list(wire.decode(events, wire.EVENTS)) == EVENTS


def test_names_and_memberships_stored_in_redis_read_back() -> None:
    assert wire.unpack_address(wire.pack_address(HERE)) == HERE
    assert wire.unpack_member(wire.pack_address(("g", HERE))) == ("g", HERE)
    assert wire.pack_address(HERE) == wire.pack_address(Address("here", 7, "room"))
    with pytest.raises(codec.Rejected):
        wire.unpack_address(wire.pack_address(("g", HERE)))
    with pytest.raises(codec.Rejected):
        wire.unpack_member(wire.pack_address(HERE))


@pytest.mark.parametrize(
    ("message", "named"),
    [
        (Unregistered(1), "Unregistered"),
        ([1, {"k": (Unregistered(2),)}], "Unregistered"),
        (object(), "object"),
        ({1, 2}, "set"),
        (2**64, "int"),
        (Said("ann", Unregistered(3)), "Unregistered"),  # type: ignore[arg-type]
    ],
)
def test_a_message_that_cannot_travel_fails_at_the_sender_naming_its_type(
    message: Any, named: str
) -> None:
    with pytest.raises(actors.NotPortable) as raised:
        wire.encode((wire.SEND, HERE, message))
    assert named in str(raised.value)
    assert "@actors.wire_type" in str(raised.value)


def test_only_attrs_classes_and_dataclasses_can_be_registered() -> None:
    class Plain:
        pass

    with pytest.raises(TypeError, match="attrs classes and dataclasses"):
        actors.wire_type(Plain)


def test_a_tag_taken_by_another_class_is_refused() -> None:
    @attrs.frozen
    class Other:
        pass

    with pytest.raises(ValueError, match="taken"):
        actors.wire_type(Other, tag=f"{Said.__module__}.{Said.__qualname__}")
    actors.wire_type(Said)  # registering the same class again is fine


def _framed(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _ext(code: int, value: Any) -> bytes:
    return msgpack.packb(msgpack.ExtType(code, msgpack.packb(value)))


def _object(tag: str, *fields: Any) -> bytes:
    return _ext(2, [tag, *fields])


def _send(*items: bytes) -> bytes:
    """A SEND-like list packed by hand around already packed items."""
    return bytes([0x90 + len(items) + 1]) + msgpack.packb("send") + b"".join(items)


BAD_CHUNKS = {
    "not an envelope": msgpack.packb({"send": 1}),
    "unknown envelope kind": msgpack.packb(["run", "x"]),
    "malformed envelope": msgpack.packb(["send", "not an address", 1]),
    "unknown extension type": _send(_ext(9, [1]), msgpack.packb(1)),
    "unknown type tag": _send(_object("os.system", "echo hi"), msgpack.packb(1)),
    "object without a tag": _send(_ext(2, []), msgpack.packb(1)),
    "wrong field count": _send(
        _object("corral.Address", "a", 1, None), _object(f"{__name__}.Point", 1)
    ),
    "malformed address": _send(_object("corral.Address", ["a"], 1, None), msgpack.packb(1)),
    "fields refused by their class": _send(
        _object("corral.Address", "a", 1, None), _object(f"{__name__}.Said", 5, "t", ())
    ),
    "trailing bytes": msgpack.packb(["hb", "a"]) + b"\x01",
    "not MessagePack": b"\xc1",
}


@pytest.mark.parametrize(("cause", "chunk"), BAD_CHUNKS.items(), ids=list(BAD_CHUNKS))
def test_a_chunk_that_is_not_allowed_is_rejected_with_its_cause(cause: str, chunk: bytes) -> None:
    good = wire.encode((wire.SEND, HERE, "fine"))
    results = list(wire.decode(good + _framed(chunk) + good, wire.ENVELOPES))
    assert results[0] == results[2] == (wire.SEND, HERE, "fine")
    assert isinstance(results[1], codec.Rejected)
    assert results[1].cause == cause


def test_a_crafted_pickle_is_rejected_and_never_run(tmp_path: pathlib.Path) -> None:
    marker = tmp_path / "ran"
    crafted = pickle.dumps((wire.SEND, HERE, Marker(marker)))
    for batch in (crafted, _framed(crafted)):
        results = list(wire.decode(batch, wire.ENVELOPES))
        assert results and all(isinstance(result, codec.Rejected) for result in results)
    assert not marker.exists()
    pickle.loads(crafted)  # the control: unpickling it does run code
    assert marker.exists()


def test_broken_framing_ends_the_batch_with_one_rejection() -> None:
    good = wire.encode((wire.HELLO, "a"))
    assert [type(r) for r in wire.decode(good + b"\x00\x00", wire.EVENTS)] == [
        tuple,
        codec.Rejected,
    ]
    assert [type(r) for r in wire.decode(good + b"\x00\x00\x01\x00abc", wire.EVENTS)] == [
        tuple,
        codec.Rejected,
    ]


def test_deep_nesting_is_rejected_not_a_crash() -> None:
    chunk = msgpack.packb([])
    for _ in range(5000):
        chunk = msgpack.packb(msgpack.ExtType(1, chunk))
    (result,) = wire.decode(_framed(chunk), wire.ENVELOPES)
    assert isinstance(result, codec.Rejected)


int64 = st.integers(-(2**63), 2**64 - 1)
plain = st.recursive(
    st.none() | st.booleans() | int64 | st.floats(allow_nan=False) | st.text() | st.binary(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=5) | int64, inner, max_size=4)
    ),
    max_leaves=20,
)


@given(plain)
def test_any_plain_data_round_trips(value: Any) -> None:
    assert codec.unpack(codec.pack(value)) == value


@given(st.binary(max_size=200), st.sampled_from([wire.ENVELOPES, wire.EVENTS]))
def test_any_bytes_decode_to_allowed_envelopes_or_rejections(
    data: bytes, shapes: dict[str, wire.Shape]
) -> None:
    for result in wire.decode(data, shapes):
        assert isinstance(result, codec.Rejected) or result[0] in shapes


@given(st.sampled_from(ENVELOPES), st.integers(0, 10_000), st.integers(0, 255))
def test_a_corrupted_envelope_is_rejected_or_still_well_formed(
    envelope: tuple[Any, ...], where: int, byte: int
) -> None:
    chunk = bytearray(wire.encode(envelope))
    chunk[4 + where % (len(chunk) - 4)] = byte
    for result in wire.decode(bytes(chunk), wire.ENVELOPES):
        if not isinstance(result, codec.Rejected):
            assert result[0] in wire.ENVELOPES
            assert len(result) == len(wire.ENVELOPES[result[0]]) + 1
