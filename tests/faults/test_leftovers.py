"""Closed connections, clean or reset, leave nothing behind in the server: no task, no actor,
no object graph, no supervisor bookkeeping.

Each test churns connections through an in-process server, waits until every connection actor
has ended, then counts what is still alive (trio tasks by walking the task tree; objects of
the server's own types with ``gc``) against the count before the churn.
"""

from __future__ import annotations

import gc

import pytest
from wsproto.frame_protocol import Opcode

import actors
from actors.diagnostics import live_tasks
from examples.echo import Echo
from server import App, ConnectionOptions, websocket
from server.engine.connection import Connection

from ..server.kit import (
    Served,
    assert_echoes,
    frame,
    raw_client,
    running,
    until_quiet,
    warnings_logged,
)

CHURN = 60
"""Connections per test: enough to tell a leak from noise, cheap enough to run every time."""


def alive(kind: type) -> int:
    gc.collect()
    return sum(1 for thing in gc.get_objects() if type(thing) is kind)


async def churn(server: Served, count: int = CHURN) -> None:
    """``count`` connections, every third reset mid-frame, the others closed cleanly."""
    for index in range(count):
        if index % 3 == 0:
            async with raw_client(server.port) as client:
                await client.send_raw(frame(Opcode.TEXT, b"half a frame")[:6])
                client.reset()
        else:
            await assert_echoes(server.url(), f"hello {index}")
    await server.until_no_connections()


def echo_app(options: ConnectionOptions) -> App:
    return App([websocket("/", Echo(), options=options)])


async def test_tasks_and_actors_return_to_baseline_after_churn(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running(echo_app(ConnectionOptions())) as server:
        await assert_echoes(server.url())
        await server.until_no_connections()
        await until_quiet()
        tasks, actor_count = live_tasks(), server.live_actors()
        await churn(server)
        await until_quiet()  # the server has finished with every closed connection
        assert (live_tasks(), server.live_actors()) == (tasks, actor_count)
        await assert_echoes(server.url())
    assert warnings_logged(caplog) == []


@pytest.mark.parametrize("idle_timeout", [60.0, None], ids=["idle-timer", "no-idle-timer"])
async def test_a_closed_connection_is_freed_at_once(idle_timeout: float | None) -> None:
    """Without a liveness timer too: the object graph goes (a timer would hold it)."""
    async with running(echo_app(ConnectionOptions(idle_timeout=idle_timeout))) as server:
        await assert_echoes(server.url())
        await server.until_no_connections()
        before = alive(Connection), alive(actors.Actor)
        await churn(server)
        assert (alive(Connection), alive(actors.Actor)) == before


async def test_the_supervisor_forgets_ended_connections() -> None:
    async with running(echo_app(ConnectionOptions(idle_timeout=None))) as server:
        await assert_echoes(server.url())
        await server.until_no_connections()
        before = alive(actors.MonitorRef)
        await churn(server)
        assert alive(actors.MonitorRef) == before
