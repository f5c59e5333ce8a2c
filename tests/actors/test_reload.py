"""Loading new code into a running node: GenServers move to it through code_change."""

from __future__ import annotations

import importlib
import itertools
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import trio

import actors
from actors.code import CODE
from actors.reload import (
    ReloadFailed,
    adopt_modules,
    load_modules,
    package_modules,
    reload_modules,
    remember_sources,
)
from actors.wire_codec import pack, unpack

_serials = itertools.count()

VERSION_1 = """
import actors

class Counter(actors.GenServer[int]):
    version = "1"

    def init(self) -> int:
        return 0

    def handle_call(self, request, caller, state):
        return ("v1", state), state + 1
"""

VERSION_2 = """
import actors

class Counter(actors.GenServer[dict]):
    version = "2"

    def init(self) -> dict:
        return {"count": 0}

    def handle_call(self, request, caller, state):
        return ("v2", state["count"]), {"count": state["count"] + 1}

    def code_change(self, old_version, state, extra):
        if extra == "refuse":
            raise RuntimeError("cannot convert")
        assert old_version == "1"
        return {"count": state}
"""


class Package:
    """A package of its own on sys.path, whose ``server`` module a test rewrites."""

    def __init__(self, root: Path) -> None:
        self.name = f"reloaded_{next(_serials)}"
        self.directory = root / self.name
        self.directory.mkdir()
        (self.directory / "__init__.py").write_text("")

    def write(self, source: str) -> None:
        (self.directory / "server.py").write_text(source)

    def load(self) -> ModuleType:
        module = importlib.import_module(f"{self.name}.server")
        remember_sources(package_modules(self.name))
        return module

    def reload(self, extra: object = None) -> None:
        importlib.invalidate_caches()
        reload_modules(
            package_modules(self.name),
            lambda: importlib.import_module(f"{self.name}.server"),
            extra,
        )


@pytest.fixture
def package(tmp_path: Path) -> Iterator[Package]:
    sys.path.insert(0, str(tmp_path))
    made = Package(tmp_path)
    try:
        yield made
    finally:
        sys.path.remove(str(tmp_path))
        for name in package_modules(made.name):
            del sys.modules[name]


async def test_a_running_server_moves_to_new_code_through_code_change(
    node: actors.Node, package: Package
) -> None:
    package.write(VERSION_1)
    module = package.load()
    async with trio.open_nursery() as nursery:
        counter = module.Counter().spawn(nursery)
        assert await actors.call(counter, "get") == ("v1", 0)
        assert await actors.call(counter, "get") == ("v1", 1)
        changed = CODE.code_changes
        package.write(VERSION_2)
        package.reload()
        assert await actors.call(counter, "get") == ("v2", 2)
        assert await actors.call(counter, "get") == ("v2", 3)
        assert CODE.code_changes == changed + 1
        # The class kept its identity: the module's name points at it, now with new code.
        assert importlib.import_module(f"{package.name}.server").Counter is module.Counter
        fresh = module.Counter().spawn(nursery)
        assert await actors.call(fresh, "get") == ("v2", 0)
        nursery.cancel_scope.cancel()


async def test_a_code_change_that_raises_leaves_the_server_on_its_old_code(
    node: actors.Node, package: Package
) -> None:
    package.write(VERSION_1)
    module = package.load()
    async with trio.open_nursery() as nursery:
        counter = module.Counter().spawn(nursery)
        assert await actors.call(counter, "get") == ("v1", 0)
        failures = CODE.code_change_failures
        package.write(VERSION_2)
        package.reload(extra="refuse")
        assert await actors.call(counter, "get") == ("v1", 1)
        assert await actors.call(counter, "get") == ("v1", 2)
        assert CODE.code_change_failures == failures + 1
        nursery.cancel_scope.cancel()


async def test_new_code_that_does_not_load_leaves_everything_as_it_was(
    node: actors.Node, package: Package
) -> None:
    package.write(VERSION_1)
    module = package.load()
    async with trio.open_nursery() as nursery:
        counter = module.Counter().spawn(nursery)
        assert await actors.call(counter, "get") == ("v1", 0)
        generation = CODE.generation
        package.write(VERSION_2.replace("def init(self)", "def init(self"))
        with pytest.raises(ReloadFailed, match=r"SyntaxError: .* at .*server\.py:\d+"):
            package.reload()
        assert CODE.generation == generation
        assert sys.modules[f"{package.name}.server"] is module
        assert await actors.call(counter, "get") == ("v1", 1)
        nursery.cancel_scope.cancel()


MESSAGE = """
import attrs
import actors

@actors.wire_type
@attrs.frozen
class Note:
    FIELDS
"""


def test_a_wire_type_decodes_as_the_running_class_until_the_switch(package: Package) -> None:
    """Messages from other nodes decoded while the new code loads must match the old code."""
    package.write(MESSAGE.replace("FIELDS", "text: str"))
    running = package.load().Note
    package.write(MESSAGE.replace("FIELDS", "text: str\n    def shout(self): return 1"))
    loaded = load_modules(
        package_modules(package.name), lambda: importlib.import_module(f"{package.name}.server")
    )
    assert type(unpack(pack(running("hi")))) is running  # loaded, not yet switched
    adopt_modules(loaded)
    note = unpack(pack(running("hi")))
    assert type(note) is running and note.shout() == 1  # the same class, with the new code


def test_a_wire_type_whose_fields_changed_decodes_as_the_new_class(package: Package) -> None:
    package.write(MESSAGE.replace("FIELDS", "text: str"))
    running = package.load().Note
    package.write(MESSAGE.replace("FIELDS", "text: str\n    loud: bool = False"))
    package.reload()
    new = importlib.import_module(f"{package.name}.server").Note
    assert new is not running
    assert type(unpack(pack(new("hi", True)))) is new
