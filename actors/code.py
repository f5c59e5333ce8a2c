"""Which code each long-lived object runs: versions, and the upgrades that changed classes.

An upgrade (``actors.reload``) gives classes new methods in place, so an object's class keeps
its identity while its code changes. Whatever runs such an object one event at a time (a
GenServer's loop, a WebSocket connection) remembers the ``generation`` it last ran at and, when
``CODE.generation`` has moved on, asks ``CODE.change_for(type(obj), generation)`` before its
next event: the version it ran then, the version it runs now, and a ``fallback`` class that
keeps the old methods, for when its ``code_change`` raises. Pure bookkeeping, no I/O.
"""

from __future__ import annotations

import hashlib
import sys
import types
from collections.abc import Mapping
from typing import Any

import attrs

VERSION_ATTRIBUTE = "version"
"""A class sets its version as ``version = "2"``; without one its version is its module's."""


def version_of(cls: type, module: types.ModuleType | None = None) -> str:
    """A class's version: its own ``version`` attribute, else the first 12 hex digits of the
    SHA-256 of its module's source as loaded (Erlang's default ``vsn`` is the module's MD5);
    ``module`` is the module it was loaded from (default: the one loaded now)."""
    own = cls.__dict__.get(VERSION_ATTRIBUTE)
    if isinstance(own, str):
        return own
    if module is None:
        module = sys.modules.get(cls.__module__)
    source = getattr(module, "__corral_source_hash__", None)
    return source if isinstance(source, str) else "unversioned"


def source_hash(source: bytes) -> str:
    """The version a module's source gives its classes (see ``version_of``)."""
    return hashlib.sha256(source).hexdigest()[:12]


@attrs.frozen
class ClassChange:
    """One class changed by one upgrade: its versions before and after, and a subclass that
    keeps its methods as they were (what an object left on the old code becomes)."""

    old_version: str
    new_version: str
    fallback: type


@attrs.frozen
class Upgrade:
    """One upgrade: its generation, the classes it changed, and the ``extra`` every
    ``code_change`` of it gets."""

    generation: int
    changes: Mapping[type, ClassChange]
    extra: Any = None


@attrs.define
class CodeHistory:
    """Every upgrade of this process so far, newest last, and how the moves to new code went."""

    generation: int = 0
    upgrades: list[Upgrade] = attrs.field(factory=list)
    code_changes: int = 0
    """Objects (connections, GenServers) moved to new code through ``code_change``."""
    code_change_failures: int = 0
    """Objects whose ``code_change`` raised: they stay on the code they ran."""

    def record(self, changes: Mapping[type, ClassChange], extra: Any = None) -> Upgrade:
        """A new generation, in which ``changes`` took effect."""
        self.generation += 1
        upgrade = Upgrade(self.generation, dict(changes), extra)
        self.upgrades.append(upgrade)
        return upgrade

    @property
    def extra(self) -> Any:
        """The latest upgrade's ``extra`` (None before any)."""
        return self.upgrades[-1].extra if self.upgrades else None

    def change_for(self, cls: type, since: int) -> ClassChange | None:
        """How ``cls`` changed after generation ``since``: from the version it had then (and
        that version's methods, in ``fallback``) to the one it has now; None if unchanged."""
        first: ClassChange | None = None
        last: ClassChange | None = None
        for upgrade in self.upgrades[since:]:
            change = upgrade.changes.get(cls)
            if change is not None:
                first = first or change
                last = change
        if first is None or last is None:
            return None
        return ClassChange(first.old_version, last.new_version, first.fallback)


CODE = CodeHistory()
"""This process's upgrades (code is per process, as Erlang's is per node)."""


def fall_back(obj: Any, change: ClassChange) -> Any:
    """A copy of ``obj`` (sharing its attributes' values) that runs the old methods: for one
    whose ``code_change`` raised."""
    old: Any = object.__new__(change.fallback)
    if hasattr(obj, "__dict__"):
        old.__dict__.update(obj.__dict__)
    for name in _slot_names(type(obj)):
        if hasattr(obj, name):
            object.__setattr__(old, name, getattr(obj, name))
    return old


def _slot_names(cls: type) -> list[str]:
    names: list[str] = []
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        names.extend([slots] if isinstance(slots, str) else slots)
    return [name for name in names if name not in ("__dict__", "__weakref__")]
