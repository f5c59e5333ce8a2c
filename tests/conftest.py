"""Fixtures shared by every test package."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
import trio.testing

from .server.kit import QUIET_SECONDS


@pytest.fixture
def virtual_clock() -> trio.testing.MockClock:
    """Virtual time that jumps once everything has been idle for 5 real milliseconds.

    pytest-trio's ``autojump_clock`` jumps the moment no task is runnable, which over real
    sockets can be while bytes are still in flight on the loopback (a client's pong, say), so a
    virtual pong timeout can fire for a live client. A few real milliseconds of quiet first
    keeps the virtual clock honest at almost no cost.
    """
    return trio.testing.MockClock(autojump_threshold=QUIET_SECONDS)


@pytest.fixture
def collector_off() -> Iterator[None]:
    """The cycle collector off for the test: an object held only by a reference cycle stays
    alive, so a test can tell that reference counting alone freed what it should."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
