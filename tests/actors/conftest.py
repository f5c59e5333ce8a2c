"""A running node for every runtime test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import actors


@pytest.fixture
async def node() -> AsyncIterator[actors.Node]:
    async with actors.open_node("test") as running:
        yield running
