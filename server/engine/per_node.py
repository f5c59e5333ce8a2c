"""One object per actor node, made on first use and gone with the node: a server's state that
belongs to the node it runs on (its stats, its held writes, its dashboard history)."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

from actors import Node

T = TypeVar("T")


class PerNode(Generic[T]):
    """``per_node(node)``: the one ``T`` of an actor node, made on first use, gone with it."""

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._made: weakref.WeakKeyDictionary[Node, T] = weakref.WeakKeyDictionary()

    def __call__(self, node: Node) -> T:
        made = self._made.get(node)
        if made is None:
            made = self._made[node] = self._make()
        return made
