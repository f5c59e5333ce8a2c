"""Deliberate typing mistakes, each marked ``# rejected:`` and its error code: mypy must
report exactly these (``tests/test_static_checks.py``), which shows that
``WebSocketHandler[State]``, ``Upgrade[State]`` and ``spawn`` really check. Never run."""

from __future__ import annotations

from typing import Any

import trio

import actors
from server import Frame, Request, Text, Upgrade, WebSocketHandler


class Counter(WebSocketHandler[int]):
    def init(self, request: Request) -> Upgrade[int]:
        return Upgrade("zero")  # rejected: [arg-type]

    def websocket_init(self, state: int) -> tuple[None, int]:
        return None, state

    def websocket_handle(self, frame: Frame, state: int) -> tuple[Text, int]:
        return Text("counted"), str(state + 1)  # rejected: [return-value]

    def websocket_info(self, message: Any, state: str) -> tuple[None, str]:  # rejected: [override]
        return None, state


class Greeter(WebSocketHandler[str]):
    def websocket_handle(  # rejected: [override]
        self, frame: Frame, state: str
    ) -> tuple[None, bytes]:
        return None, state.encode()


def initial_count() -> int:
    count: int = Upgrade("zero").state  # rejected: [assignment]
    return count


async def worker(actor: actors.Actor, count: int) -> None:
    await actor.receive()


def start(nursery: trio.Nursery) -> None:
    actors.spawn(nursery, worker, "three")  # rejected: [arg-type]
    actors.spawn(nursery, worker)  # rejected: [arg-type]
    actors.spawn(nursery, worker, 3)
    actors.spawn(nursery, worker, 3, capacity="big")  # rejected: [arg-type]
