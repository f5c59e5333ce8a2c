"""A closed connection is freed by reference counting alone: its actor, connection and session
leave no reference cycle behind. With thousands of connections closing at once, cyclic garbage
would mean full collector passes that stall every other connection."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import actors
from server import App, WebSocketHandler, websocket
from server.engine.connection import Connection
from server.engine.session import Session

from .kit import client, running_clean

CLIENTS = 3


class Remembered(WebSocketHandler[Any]):
    """Notes a weak reference to each connection's actor."""

    refs: list[weakref.ref[actors.Actor]] = []

    def websocket_init(self, state: Any) -> tuple[None, Any]:
        self.refs.append(weakref.ref(actors.current_actor()))
        return None, state


def alive(kind: type) -> int:
    """How many objects of ``kind`` exist (without a collector pass)."""
    return sum(1 for thing in gc.get_objects() if type(thing) is kind)


async def test_closed_connections_are_freed_without_the_cycle_collector(
    collector_off: None,
) -> None:
    Remembered.refs = []
    before = alive(Connection), alive(Session)  # other tests' handlers may keep theirs
    async with running_clean(App([websocket("/", Remembered())])) as served:
        for number in range(CLIENTS):
            async with client(served.url()) as ws:
                await ws.send_message(f"hello {number}")
        await served.until_no_connections()
        assert len(Remembered.refs) == CLIENTS
        left = [ref() for ref in Remembered.refs if ref() is not None]
        assert not left, f"actors held only by reference cycles: {left}"
        assert (alive(Connection), alive(Session)) == before
