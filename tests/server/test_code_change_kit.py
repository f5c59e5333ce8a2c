"""The test kit checks a handler's code_change in process: ``Driven.change_code``."""

from __future__ import annotations

from typing import Any

import pytest

from server import Frame, Text, Upgrade, WebSocketHandler
from server.testing import drive


class CountsInAnInt(WebSocketHandler[int]):
    version = "1"

    def init(self, request: Any) -> Upgrade[int]:
        return Upgrade(0)

    def websocket_handle(self, frame: Frame, state: int) -> tuple[Text, int]:
        return Text(f"v1 {state + 1}"), state + 1


class CountsInADict(WebSocketHandler[dict[str, int]]):
    version = "2"

    def websocket_handle(self, frame: Frame, state: dict[str, int]) -> tuple[Text, dict[str, int]]:
        count = state["count"] + 1
        return Text(f"v2 {count}"), {"count": count}

    def code_change(self, old_version: str, state: Any, extra: Any) -> dict[str, int]:
        if old_version != "1":
            raise ValueError(f"no way from version {old_version}")
        return {"count": state}


async def test_a_driven_connection_moves_to_new_code_through_code_change() -> None:
    async with drive(CountsInAnInt()) as driven:
        await driven.send_text("a")
        await driven.assert_push("v1 1")
        assert await driven.change_code(CountsInADict()) == {"count": 1}
        await driven.send_text("b")
        await driven.assert_push("v2 2")
        assert driven.state == {"count": 2}


async def test_a_code_change_that_raises_is_raised_and_the_old_code_stays() -> None:
    async with drive(CountsInAnInt()) as driven:
        with pytest.raises(ValueError, match="no way from version 0"):
            await driven.change_code(CountsInADict(), old_version="0")
        await driven.send_text("a")
        await driven.assert_push("v1 1")
