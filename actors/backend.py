"""Names and groups behind one small interface; the in-process backend is the default.

A distributed backend (Redis, in a later change) implements the same protocol, keeping a
local view for the synchronous reads so that ``send`` never waits on the network.
"""

from __future__ import annotations

from typing import Protocol

import trio

from .address import Address
from .errors import NameTaken


class Backend(Protocol):
    """Registry (unique names) and process groups (pubsub membership)."""

    def register(self, name: str, address: Address) -> None: ...
    def unregister(self, name: str) -> None: ...
    def whereis(self, name: str) -> Address | None: ...
    def names_of(self, address: Address) -> list[str]: ...
    async def wait_registered(self, name: str) -> Address: ...
    def join(self, group: str, address: Address) -> None: ...
    def leave(self, group: str, address: Address) -> None: ...
    def members(self, group: str) -> list[Address]: ...
    def which_groups(self) -> list[str]: ...
    def forget(self, address: Address) -> None:
        """Drop every name and membership of an actor that has ended."""
        ...


class LocalBackend:
    """The embedded default: plain dicts, consistent at once, for one process."""

    def __init__(self) -> None:
        self._names: dict[str, Address] = {}
        self._names_of: dict[Address, set[str]] = {}
        self._groups: dict[str, dict[Address, None]] = {}
        self._groups_of: dict[Address, set[str]] = {}
        self._name_waiters: dict[str, trio.Event] = {}

    def register(self, name: str, address: Address) -> None:
        """Bind ``name`` to ``address``; NameTaken if another actor holds it."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"an actor name must be a non-empty str, not {name!r}")
        holder = self._names.get(name)
        if holder is not None and holder != address:
            raise NameTaken(name, holder)
        self._names[name] = address
        self._names_of.setdefault(address, set()).add(name)
        waiter = self._name_waiters.pop(name, None)
        if waiter is not None:
            waiter.set()

    def unregister(self, name: str) -> None:
        """Remove ``name`` (no error if it is not registered)."""
        address = self._names.pop(name, None)
        if address is not None:
            _discard(self._names_of, address, name)

    def whereis(self, name: str) -> Address | None:
        """The address registered as ``name``, or None."""
        return self._names.get(name)

    def names_of(self, address: Address) -> list[str]:
        """Every name registered to ``address``."""
        return sorted(self._names_of.get(address, ()))

    async def wait_registered(self, name: str) -> Address:
        """Wait until ``name`` is registered and return its address."""
        while (address := self._names.get(name)) is None:
            waiter = self._name_waiters.setdefault(name, trio.Event())
            await waiter.wait()
        return address

    def join(self, group: str, address: Address) -> None:
        """Add ``address`` to ``group`` (joining twice is one membership)."""
        self._groups.setdefault(group, {})[address] = None
        self._groups_of.setdefault(address, set()).add(group)

    def leave(self, group: str, address: Address) -> None:
        """Remove ``address`` from ``group`` (no error if it was not a member)."""
        members = self._groups.get(group)
        if members is not None:
            members.pop(address, None)
            if not members:
                del self._groups[group]
        _discard(self._groups_of, address, group)

    def members(self, group: str) -> list[Address]:
        """Members of ``group`` in join order."""
        return list(self._groups.get(group, ()))

    def which_groups(self) -> list[str]:
        """Every group with at least one member."""
        return list(self._groups)

    def forget(self, address: Address) -> None:
        """Drop every name and membership of an ended actor."""
        for name in self._names_of.pop(address, ()):
            self._names.pop(name, None)
        for group in list(self._groups_of.get(address, ())):
            self.leave(group, address)


def _discard(index: dict[Address, set[str]], address: Address, key: str) -> None:
    keys = index.get(address)
    if keys is not None:
        keys.discard(key)
        if not keys:
            del index[address]
