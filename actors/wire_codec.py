"""Values as bytes between nodes, as data only: plain data and the types registered to cross.

What another node sends is read from a broker that others may write to, so decoding must never
run code that the bytes choose (as unpickling does). The format is MessagePack: ``None``,
``bool``, ``int`` (64 bits), ``float``, ``str``, ``bytes``, ``list`` and ``dict`` are its own
types; a ``tuple`` and an instance of a registered class are extension types, the latter tagged
with the name its class was registered under and carrying its fields. Decoding builds only
those: an unknown tag or anything malformed raises ``Rejected``. The runtime registers its own
(addresses, exit reasons, ``Exit``); an app registers its message classes with ``wire_type``.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import msgpack

_TUPLE = 1
_OBJECT = 2

MAX_DEPTH = 32
"""How deep tuples and registered objects may nest inside one another on the wire (deeper
input is refused before it can exhaust the stack)."""

PLAIN = "None, bool, int (64 bits), float, str, bytes, list, tuple and dict"
"""What crosses without registration (containers holding portable values)."""

T = TypeVar("T", bound=type)


class NotPortable(TypeError):
    """A value for another node is neither plain data nor of a registered type."""

    def __init__(self, value: Any, detail: str) -> None:
        super().__init__(
            f"{type_name(value)} cannot travel to another node ({detail}): "
            f"send plain data ({PLAIN}) or register the class with @actors.wire_type "
            "(an attrs class or dataclass whose fields are portable), on every node"
        )
        self.value = value
        self.detail = detail


class Rejected(ValueError):
    """Bytes from the broker that are not allowed data; ``cause`` says which rule they broke
    (a short, fixed phrase: it keys the rate-limited log)."""

    def __init__(self, cause: str, detail: str = "") -> None:
        super().__init__(f"{cause}: {detail}" if detail else cause)
        self.cause = cause


def type_name(value: Any) -> str:
    """The name of ``value``'s class as a message names it (``module.QualName``, or just the
    name for a builtin)."""
    kind = type(value)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


@attrs.frozen
class _WireType:
    cls: type
    tag: str
    fields_of: Callable[[Any], list[Any]]
    build: Callable[[list[Any]], Any]


_by_class: dict[type, _WireType] = {}
_by_tag: dict[str, _WireType] = {}


def wire_type(cls: T, /, *, tag: str | None = None) -> T:
    """Let instances of ``cls`` (an attrs class or a dataclass) travel between nodes.

    Use it as a class decorator (``@actors.wire_type``) in a module every node imports. The
    fields given to ``__init__`` travel and must be portable themselves; the receiving node
    calls ``cls(**fields)``. ``tag`` (default ``module.QualName``) names the class on the
    wire: nodes running different code can agree on it. Registering again is a no-op.
    """
    if attrs.has(cls):
        names = [field.alias for field in attrs.fields(cls) if field.init]
        attributes = [field.name for field in attrs.fields(cls) if field.init]
    elif dataclasses.is_dataclass(cls):
        names = attributes = [field.name for field in dataclasses.fields(cls) if field.init]
    else:
        raise TypeError(
            f"wire_type registers attrs classes and dataclasses, not {cls!r}; send other "
            f"values as plain data ({PLAIN})"
        )
    getter = operator.attrgetter(*attributes) if attributes else None

    def fields_of(value: Any) -> list[Any]:
        if getter is None:
            return []
        got = getter(value)
        return [got] if len(attributes) == 1 else list(got)

    def build(values: list[Any]) -> Any:
        if len(values) != len(names):
            raise Rejected("wrong field count", f"{tag} takes {len(names)}, got {len(values)}")
        return cls(**dict(zip(names, values, strict=True)))

    register(cls, tag or f"{cls.__module__}.{cls.__qualname__}", fields_of, build)
    return cls


def register(
    cls: type, tag: str, fields_of: Callable[[Any], list[Any]], build: Callable[[list[Any]], Any]
) -> None:
    """Register ``cls`` under ``tag`` with its own field reader and builder (the runtime's
    types that are not plain attrs classes use this; apps use ``wire_type``)."""
    known = _by_tag.get(tag)
    if known is not None and _qualified(known.cls) != _qualified(cls):
        raise ValueError(f"the wire tag {tag!r} is taken by another class; pass tag=...")
    entry = _WireType(cls, tag, fields_of, build)
    _by_class[cls] = entry
    if known is None or known.cls is cls:
        _by_tag[tag] = entry
    # Else the same class imported again by an upgrade (``actors.reload``): the tag decodes as
    # the running class until the upgrade switches (``adopt``).


def adopt(old: type, new: type, *, keep_old: bool) -> None:
    """An upgrade (``actors.reload``) switches from ``old`` to its re-imported twin ``new``: the
    tag decodes as ``old`` if it took ``new``'s code in place (``keep_old``), else as ``new``
    (its layout changed). Instances of either encode under the tag."""
    entry = _by_class.get(new)
    if entry is not None:
        _by_tag[entry.tag] = _by_class.get(old, entry) if keep_old else entry


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _default(value: Any) -> msgpack.ExtType:
    """How msgpack packs what it does not know: a tuple, or a registered type's fields."""
    if type(value) is tuple:
        return msgpack.ExtType(_TUPLE, _pack(list(value)))
    if type(value) is int:
        raise NotPortable(value, "an int beyond 64 bits")
    entry = _by_class.get(type(value))
    if entry is None:
        raise NotPortable(value, "not plain data, and its class is not registered")
    return msgpack.ExtType(_OBJECT, _pack([entry.tag, *entry.fields_of(value)]))


class _Packers(threading.local):
    """One msgpack packer per nesting level (a tuple's or an object's fields are packed while
    its container is), made once per thread: a new packer per value costs more than packing."""

    def __init__(self) -> None:
        self.depth = 0
        self.by_depth: list[msgpack.Packer] = []


_packers = _Packers()


def _pack(value: Any) -> bytes:
    packers = _packers
    depth = packers.depth
    if depth > MAX_DEPTH:
        raise NotPortable(value, f"nested more than {MAX_DEPTH} tuples or objects deep")
    if depth == len(packers.by_depth):
        packers.by_depth.append(
            msgpack.Packer(default=_default, strict_types=True, use_bin_type=True)
        )
    packers.depth = depth + 1
    try:
        return packers.by_depth[depth].pack(value)
    except NotPortable:
        raise
    except (TypeError, ValueError, OverflowError, RecursionError) as error:
        raise NotPortable(value, str(error)) from error
    finally:
        packers.depth = depth


def _ext_hook(code: int, data: bytes, depth: int) -> Any:
    """Build a tuple or a registered type's instance; anything else is refused."""
    if code == _TUPLE:
        return tuple(_unpack_list(data, "tuple", depth))
    if code != _OBJECT:
        raise Rejected("unknown extension type", str(code))
    values = _unpack_list(data, "object", depth)
    if not values or type(values[0]) is not str:
        raise Rejected("object without a tag")
    entry = _by_tag.get(values[0])
    if entry is None:
        raise Rejected("unknown type tag", repr(values[0][:100]))
    try:
        return entry.build(values[1:])
    except Rejected:
        raise
    except Exception as error:  # the class's own __init__ refused the fields it was given
        raise Rejected("fields refused by their class", f"{entry.tag}: {error!r}") from error


def _unpack_list(data: bytes, expect: str, depth: int) -> list[Any]:
    value = _unpack(data, depth)
    if type(value) is not list:
        raise Rejected("malformed " + expect)
    return value


def _unpack(data: bytes | memoryview, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise Rejected("nested too deep", f"more than {MAX_DEPTH} tuples or objects")
    try:
        return msgpack.unpackb(data, ext_hook=_HOOKS[depth], raw=False, strict_map_key=False)
    except Rejected:
        raise
    except msgpack.ExtraData as error:
        raise Rejected("trailing bytes") from error
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as error:
        raise Rejected("not MessagePack", type(error).__name__) from error


_HOOKS = tuple(functools.partial(_ext_hook, depth=depth + 1) for depth in range(MAX_DEPTH + 1))
"""The extension hook for each nesting level (made once: decoding is a hot path)."""


def pack(value: Any) -> bytes:
    """``value`` as bytes (NotPortable if it or something inside it cannot travel)."""
    return _pack(value)


def unpack(data: bytes | memoryview) -> Any:
    """The value packed in ``data``; Rejected for anything that is not allowed data."""
    return _unpack(data, 0)
