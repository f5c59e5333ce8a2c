"""Loading new code into a running process: re-import modules, then give old classes new code.

``load_modules(names, build)`` takes the modules out of ``sys.modules`` and runs ``build()``,
which imports them afresh from disk (and builds what it needs from them: an app); it may run in
a thread while the loop runs the old code. ``adopt_modules`` then switches, in the loop. If anything
raises (a syntax error, an app that fails to build) the old modules go back and nothing has
changed: ``ReloadFailed`` says why. Otherwise each class the old and the new modules both
define, with the same layout (bases, slots, attrs fields), keeps its identity and takes the new
class's methods in place, so its live instances (states, messages in flight) run the new code
and ``isinstance`` holds across versions; the new modules' names are pointed at it. A class whose
layout changed stays two classes: old instances keep the old one. Every change is recorded in
``code.CODE`` (a new generation), with a fallback class that keeps the old methods.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import os
import sys
import types
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Generic, TypeVar

import attrs

from . import wire_codec
from .code import CODE, ClassChange, Upgrade, source_hash, version_of

T = TypeVar("T")

_NOT_COPIED = frozenset(
    {"__dict__", "__weakref__", "__module__", "__qualname__", "__slots__", "_abc_impl"}
)


class ReloadFailed(Exception):
    """The new code did not load; the old code runs on. The message says why."""


@attrs.frozen
class Reloaded:
    """What an upgrade loaded: the modules, the generation, and the classes it changed in place
    (``replaced``: classes whose layout changed, now two classes)."""

    modules: tuple[str, ...]
    upgrade: Upgrade
    replaced: tuple[str, ...]


def package_modules(module_name: str) -> list[str]:
    """The loaded modules of ``module_name``'s top-level package (or that module alone), in
    import order: what an upgrade of an app defined there re-imports."""
    top = module_name.partition(".")[0]
    return [name for name in list(sys.modules) if name == top or name.startswith(top + ".")]


def remember_sources(names: Iterable[str]) -> None:
    """Note each module's source hash (its classes' default version) as loaded now."""
    for name in names:
        module = sys.modules.get(name)
        if module is not None:
            _note_source(module)


@attrs.frozen
class Loaded(Generic[T]):
    """New modules imported beside the old ones (``load_modules``), not yet adopted."""

    built: T
    pairs: tuple[tuple[types.ModuleType, types.ModuleType], ...]
    names: tuple[str, ...]


def load_modules(names: list[str], build: Callable[[], T]) -> Loaded[T]:
    """Import ``names`` afresh from disk through ``build()``, leaving the running code as it is;
    ReloadFailed, with ``sys.modules`` as it was, if that raises. Safe to run in a thread (the
    loop runs the old code meanwhile, which finds its modules through its own globals)."""
    old = {name: sys.modules[name] for name in names if name in sys.modules}
    tops = tuple({name.partition(".")[0] for name in names})
    for name, module in old.items():
        del sys.modules[name]
        _forget_bytecode(module)
    try:
        built = build()
    except Exception as exc:
        for name in [name for name in sys.modules if _under(name, tops)]:
            del sys.modules[name]  # what the failed build imported afresh
        sys.modules.update(old)
        raise ReloadFailed(_why(exc)) from exc
    pairs = tuple(
        (module, sys.modules[name]) for name, module in old.items() if name in sys.modules
    )
    for name, module in old.items():
        sys.modules.setdefault(name, module)  # not imported by the new code: kept as it was
    for _, new in pairs:
        _note_source(new)
    return Loaded(built, pairs, tuple(old))


def adopt_modules(loaded: Loaded[Any], extra: Any = None) -> Reloaded:
    """Give the old classes the new code (see the module docstring) and record the upgrade;
    ``extra`` goes to every ``code_change`` of it. Run it in the loop, between two events."""
    changes, replaced = _patch_classes(list(loaded.pairs))
    upgrade = CODE.record(changes, extra)
    return Reloaded(loaded.names, upgrade, tuple(replaced))


def reload_modules(
    names: list[str], build: Callable[[], T], extra: Any = None
) -> tuple[T, Reloaded]:
    """``load_modules`` then ``adopt_modules``, in one go."""
    loaded = load_modules(names, build)
    return loaded.built, adopt_modules(loaded, extra)


def _forget_bytecode(module: types.ModuleType) -> None:
    """Remove the module's cached bytecode: a source rewritten within the same second, at the
    same size, would otherwise load the old code again (the cache checks mtime and size)."""
    cached = getattr(module, "__cached__", None)
    if cached:
        with contextlib.suppress(OSError):
            os.remove(cached)


def _under(name: str, tops: tuple[str, ...]) -> bool:
    return name.partition(".")[0] in tops


def _why(exc: BaseException) -> str:
    """One line: the error, and for a syntax error (or one that wraps it) its file and line."""
    if isinstance(exc.__cause__, SyntaxError):
        exc = exc.__cause__
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} at {exc.filename}:{exc.lineno}"
    if exc.__cause__ is not None:
        return str(exc)  # a wrapper (the CLI's AppNotFound): its message names the cause
    return f"{type(exc).__name__}: {exc}"


def _note_source(module: types.ModuleType) -> None:
    path = getattr(module, "__file__", None)
    if path is None:
        return
    try:
        module.__corral_source_hash__ = source_hash(Path(path).read_bytes())  # type: ignore[attr-defined]
    except OSError:
        pass


def _patch_classes(
    pairs: list[tuple[types.ModuleType, types.ModuleType]],
) -> tuple[dict[type, ClassChange], list[str]]:
    """Give each old class of ``pairs`` its new class's code where the layouts match."""
    matched: dict[type, type] = {}  # new class -> old class
    old_modules = {old.__name__: old for old, _ in pairs}
    for old_module, new_module in pairs:
        for name, new_cls in vars(new_module).items():
            old_cls: Any = vars(old_module).get(name)
            if _defined_in(new_cls, new_module) and _defined_in(old_cls, old_module):
                matched[new_cls] = old_cls
    changes: dict[type, ClassChange] = {}
    replaced: list[str] = []
    kept: dict[type, type] = {}  # new -> old: enums with the same members keep the old class
    for new_cls, old_cls in matched.items():
        if _same_enum(old_cls, new_cls):
            kept[new_cls] = old_cls
            continue
        if not _same_layout(old_cls, new_cls, matched):
            replaced.append(f"{new_cls.__module__}.{new_cls.__qualname__}")
            continue
        old_version = version_of(old_cls, old_modules[old_cls.__module__])
        fallback = _fallback(old_cls)
        _give_code(old_cls, new_cls)
        changes[old_cls] = ClassChange(old_version, version_of(old_cls), fallback)
    patched = {new: old for new, old in matched.items() if old in changes} | kept
    for _, new_module in pairs:
        for name, value in vars(new_module).items():
            if isinstance(value, type) and value in patched:
                setattr(new_module, name, patched[value])
    for new_cls, old_cls in matched.items():
        wire_codec.adopt(old_cls, new_cls, keep_old=old_cls in changes)
    return changes, replaced


def _defined_in(value: Any, module: types.ModuleType) -> bool:
    return isinstance(value, type) and value.__module__ == module.__name__


def _same_enum(old: type, new: type) -> bool:
    """Two enums with the same members (names and values): the old one serves both."""
    if not (issubclass(old, enum.Enum) and issubclass(new, enum.Enum)):
        return False
    return [(m.name, m.value) for m in old] == [(m.name, m.value) for m in new]


def _same_layout(old: type, new: type, matched: dict[type, type]) -> bool:
    """Whether instances of ``old`` can run ``new``'s methods as they are."""
    if issubclass(old, enum.Enum) or type(old) is not type(new):
        return False
    bases = tuple(matched.get(base, base) for base in new.__bases__)
    if bases != old.__bases__:
        return False
    if old.__dict__.get("__slots__") != new.__dict__.get("__slots__"):
        return False
    return _field_names(old) == _field_names(new)


def _field_names(cls: type) -> list[str] | None:
    """An attrs class's or dataclass's fields (None for another class)."""
    if attrs.has(cls):
        return [field.name for field in attrs.fields(cls)]
    if dataclasses.is_dataclass(cls):
        return [field.name for field in dataclasses.fields(cls)]
    return None


def _fallback(cls: type) -> type:
    """A subclass of ``cls`` that keeps its methods as they are now (before patching)."""
    namespace = {
        name: value
        for name, value in cls.__dict__.items()
        if name not in _NOT_COPIED and not _is_slot(value)
    }
    namespace["__slots__"] = ()
    namespace["__module__"] = cls.__module__
    fallback = types.new_class(cls.__name__, (cls,), {}, lambda ns: ns.update(namespace))
    fallback.__qualname__ = f"{cls.__qualname__} (old code)"
    return fallback


def _give_code(old: type, new: type) -> None:
    """Put ``new``'s attributes on ``old`` (methods rebound to ``old`` for ``super()``) and
    remove what ``new`` no longer has."""
    for name in [name for name in old.__dict__ if name not in new.__dict__]:
        if name not in _NOT_COPIED and not _is_slot(old.__dict__[name]):
            delattr(old, name)
    for name, value in new.__dict__.items():
        if name in _NOT_COPIED or _is_slot(value):
            continue
        setattr(old, name, _rebound(value, new, old))
    old.__doc__ = new.__doc__


def _is_slot(value: Any) -> bool:
    return isinstance(value, (types.MemberDescriptorType, types.GetSetDescriptorType))


def _rebound(value: Any, new: type, old: type) -> Any:
    """``value`` with its ``__class__`` cell (zero-argument ``super()``) pointing at ``old``."""
    if isinstance(value, (staticmethod, classmethod)):
        return type(value)(_rebound(value.__func__, new, old))
    if isinstance(value, property):
        fget, fset, fdel = (
            _rebound(f, new, old) if f else None for f in (value.fget, value.fset, value.fdel)
        )
        return property(fget, fset, fdel, value.__doc__)
    if not isinstance(value, types.FunctionType) or not value.__closure__:
        return value
    if not any(_cell_holds(cell, new) for cell in value.__closure__):
        return value
    closure = tuple(
        types.CellType(old) if _cell_holds(cell, new) else cell for cell in value.__closure__
    )
    rebound = types.FunctionType(
        value.__code__, value.__globals__, value.__name__, value.__defaults__, closure
    )
    rebound.__kwdefaults__ = value.__kwdefaults__
    rebound.__dict__.update(value.__dict__)
    rebound.__qualname__ = value.__qualname__
    rebound.__doc__ = value.__doc__
    return rebound


def _cell_holds(cell: Any, value: Any) -> bool:
    try:
        return cell.cell_contents is value
    except ValueError:  # an empty cell
        return False
