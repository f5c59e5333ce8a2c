"""Cowboy-style path routing: compile route patterns once, match request paths to targets.

Pure functions and records, no I/O. Pattern syntax (as in Cowboy's ``cowboy_router``):

* ``/chat/lobby`` literal segments, compared with the percent-decoded path segment;
* ``/chat/:room`` binds one segment to ``room``; ``:_`` matches a segment without binding it;
  a name bound twice must match the same value both times;
* ``/hats[/page/:number]`` optional part, which may nest: ``/hats[/page[/:number]]``;
* ``/static/[...]`` matches any remaining segments (none included); they become ``Match.path_info``.

A trailing slash in a path is ignored (``/a/`` matches ``/a``), empty inner segments are kept
(``/a//b`` has three), and ``%2F`` stays inside its segment rather than splitting the path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal, TypeAlias, cast

import attrs

Constraint: TypeAlias = Literal["int", "nonempty"] | Callable[[Any], object]
"""``"int"`` converts to int, ``"nonempty"`` refuses ``""``; a callable converts or raises
ValueError.

Constraints on one binding run in order, each on the previous one's result (first on the str).
"""

RouteKind: TypeAlias = Literal["websocket", "http"]

_REST = "[...]"
_ANY = ":_"
_INT = re.compile(r"-?[0-9]+")
_HEX = frozenset("0123456789abcdefABCDEF")


class MalformedPath(ValueError):
    """The request path cannot be routed: it is not absolute or its percent-encoding is invalid."""


@attrs.frozen
class _Binding:
    name: str


@attrs.frozen
class _Alternative:
    """One expansion of a pattern: literal strings, bindings, ``None`` for ``:_``; maybe a rest."""

    segments: tuple[str | _Binding | None, ...]
    has_rest: bool


ConstraintSpec: TypeAlias = (
    Mapping[str, Constraint | Sequence[Constraint]]
    | Iterable[tuple[str, Constraint | Sequence[Constraint]]]
)


def _to_constraints(value: ConstraintSpec) -> tuple[tuple[str, tuple[Constraint, ...]], ...]:
    """Normalise ``{name: constraint-or-sequence}`` (or its pairs) to an immutable tuple."""
    pairs = value.items() if isinstance(value, Mapping) else value
    items: list[tuple[str, tuple[Constraint, ...]]] = []
    for name, spec in pairs:
        if isinstance(spec, (list, tuple)):
            items.append((name, tuple(spec)))
        else:
            items.append((name, (cast(Constraint, spec),)))
    return tuple(items)


@attrs.frozen
class Route:
    """A path pattern, the opaque target it leads to, and checks on its bindings.

    ``kind`` tells the listener what the target is: ``"websocket"`` (upgrade the connection and
    hand it to the connection layer) or ``"http"`` (call ``target(request)`` for a response).
    Raises ValueError at construction when the pattern or a constraint is malformed.
    """

    pattern: str
    target: object
    constraints: tuple[tuple[str, tuple[Constraint, ...]], ...] = attrs.field(
        default=(), converter=_to_constraints
    )
    kind: RouteKind = "websocket"
    _alternatives: tuple[_Alternative, ...] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        if self.kind not in ("websocket", "http"):
            raise ValueError(f"route kind must be 'websocket' or 'http', not {self.kind!r}")
        alternatives = compile_pattern(self.pattern)
        _check_constraints(self.pattern, alternatives, self.constraints)
        object.__setattr__(self, "_alternatives", alternatives)


@attrs.frozen
class Match:
    """The route a path matched, its (converted) bindings, and the segments ``[...]`` took."""

    route: Route
    bindings: Mapping[str, object]
    path_info: tuple[str, ...] | None


def _route_tuple(routes: Iterable[Route]) -> tuple[Route, ...]:
    return tuple(routes)


@attrs.frozen
class Router:
    """An ordered list of routes; the first route whose pattern and constraints accept wins."""

    routes: tuple[Route, ...] = attrs.field(converter=_route_tuple)

    def match(self, path: str) -> Match | None:
        """Match a percent-encoded absolute path (no query); None when no route accepts it.

        Raises MalformedPath when ``path`` does not start with ``/`` or is badly encoded.
        """
        segments = split_path(path)
        for route in self.routes:
            for alternative in route._alternatives:
                found = _match_alternative(alternative, segments, route.constraints)
                if found is not None:
                    bindings, path_info = found
                    return Match(route, MappingProxyType(bindings), path_info)
        return None


def split_path(path: str) -> tuple[str, ...]:
    """Split an absolute path into percent-decoded segments; a trailing slash is ignored."""
    if not path.startswith("/"):
        raise MalformedPath(f"path must start with '/': {path!r}")
    raw = path[1:].split("/")
    if raw[-1] == "":
        raw.pop()
    return tuple(percent_decode(segment) for segment in raw)


def percent_decode(segment: str) -> str:
    """Strictly decode ``%XX`` escapes as UTF-8 (``+`` stays ``+``); MalformedPath otherwise."""
    if "%" not in segment:
        return segment
    out = bytearray()
    index = 0
    while index < len(segment):
        char = segment[index]
        if char == "%":
            code = segment[index + 1 : index + 3]
            if len(code) != 2 or not set(code) <= _HEX:
                raise MalformedPath(f"bad percent-escape in path segment {segment!r}")
            out.append(int(code, 16))
            index += 3
        else:
            out += char.encode("utf-8")
            index += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPath(f"path segment {segment!r} is not UTF-8") from None


def compile_pattern(pattern: str) -> tuple[_Alternative, ...]:
    """Expand optional parts and parse each expansion; ValueError for a malformed pattern."""
    if not pattern.startswith("/"):
        raise ValueError(f"route pattern must start with '/': {pattern!r}")
    alternatives: list[_Alternative] = []
    for text in _expand(pattern, pattern):
        alternative = _parse_alternative(text, pattern)
        if alternative not in alternatives:
            alternatives.append(alternative)
    alternatives.sort(key=lambda alt: -len(alt.segments))
    return tuple(alternatives)


def _expand(text: str, pattern: str) -> list[str]:
    """All expansions of the optional ``[...]`` parts of ``text``, with the part first."""
    start = _first_optional(text, pattern)
    if start is None:
        return [text]
    end = _closing_bracket(text, start, pattern)
    before, inner, after = text[:start], text[start + 1 : end], text[end + 1 :]
    if not (before.endswith("/") or inner.startswith("/")):
        raise ValueError(f"optional part must start a segment in route pattern {pattern!r}")
    if after and after[0] not in "/[]":
        raise ValueError(f"optional part must end a segment in route pattern {pattern!r}")
    return [
        *_expand(before + inner + after, pattern),
        *_expand(before + after, pattern),
    ]


def _first_optional(text: str, pattern: str) -> int | None:
    """Index of the first ``[`` that opens an optional part (not ``[...]``), or None."""
    index = text.find("[")
    while index != -1 and text.startswith(_REST, index):
        index = text.find("[", index + len(_REST))
    if index == -1 and "]" in text.replace(_REST, ""):
        raise ValueError(f"unbalanced ']' in route pattern {pattern!r}")
    return None if index == -1 else index


def _closing_bracket(text: str, start: int, pattern: str) -> int:
    """Index of the ``]`` closing the ``[`` at ``start``, skipping nested parts and ``[...]``."""
    depth = 0
    index = start
    while index < len(text):
        if text.startswith(_REST, index):
            index += len(_REST)
            continue
        if text[index] == "[":
            depth += 1
        elif text[index] == "]":
            depth -= 1
            if depth == 0:
                return index
        index += 1
    raise ValueError(f"unclosed '[' in route pattern {pattern!r}")


def _parse_alternative(text: str, pattern: str) -> _Alternative:
    """Parse one bracket-free expansion into segments."""
    parts = [part for part in text.split("/") if part]
    has_rest = bool(parts) and parts[-1] == _REST
    if has_rest:
        parts.pop()
    return _Alternative(tuple(_parse_segment(part, pattern) for part in parts), has_rest)


def _parse_segment(part: str, pattern: str) -> str | _Binding | None:
    if part == _REST or "[" in part:
        raise ValueError(f"'[...]' must be the last segment of route pattern {pattern!r}")
    if part == _ANY:
        return None
    if part.startswith(":"):
        name = part[1:]
        if not name.isidentifier():
            raise ValueError(
                f"binding name {name!r} in route pattern {pattern!r} is not an identifier"
            )
        return _Binding(name)
    if ":" in part:
        raise ValueError(f"':' may only start a segment in route pattern {pattern!r}")
    return part


def _check_constraints(
    pattern: str,
    alternatives: Iterable[_Alternative],
    constraints: Iterable[tuple[str, tuple[Constraint, ...]]],
) -> None:
    """Refuse constraints on names the pattern never binds, or not 'int'/'nonempty'/callable."""
    names = {seg.name for alt in alternatives for seg in alt.segments if isinstance(seg, _Binding)}
    for name, checks in constraints:
        if name not in names:
            raise ValueError(f"constraint on {name!r}, which route pattern {pattern!r} never binds")
        for check in checks:
            if not (check in ("int", "nonempty") or callable(check)):
                raise ValueError(
                    f"constraint {check!r} on {name!r} is not 'int', 'nonempty' or a callable"
                )


def _match_alternative(
    alternative: _Alternative,
    segments: tuple[str, ...],
    constraints: Iterable[tuple[str, tuple[Constraint, ...]]],
) -> tuple[dict[str, object], tuple[str, ...] | None] | None:
    """Bindings and path_info if ``segments`` fit ``alternative`` and its constraints; else None."""
    count = len(alternative.segments)
    if len(segments) < count or (len(segments) > count and not alternative.has_rest):
        return None
    bindings: dict[str, str] = {}
    for expected, actual in zip(alternative.segments, segments, strict=False):
        if isinstance(expected, _Binding):
            if bindings.setdefault(expected.name, actual) != actual:
                return None
        elif expected is not None and expected != actual:
            return None
    converted = _apply_constraints(bindings, constraints)
    if converted is None:
        return None
    return converted, (segments[count:] if alternative.has_rest else None)


def _apply_constraints(
    bindings: Mapping[str, str],
    constraints: Iterable[tuple[str, tuple[Constraint, ...]]],
) -> dict[str, object] | None:
    """Run each binding through its constraints in order; None as soon as one refuses."""
    converted: dict[str, object] = dict(bindings)
    for name, checks in constraints:
        if name not in converted:
            continue
        for check in checks:
            try:
                converted[name] = _run_constraint(check, converted[name])
            except ValueError:
                return None
    return converted


def _run_constraint(check: Constraint, value: object) -> object:
    """Apply one constraint; raise ValueError to refuse the value."""
    if check == "int":
        if not isinstance(value, str) or not _INT.fullmatch(value):
            raise ValueError("not an integer")
        return int(value)
    if check == "nonempty":
        if value == "":
            raise ValueError("empty")
        return value
    assert callable(check)
    return check(value)
