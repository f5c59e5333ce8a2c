"""Closed connections, clean or reset, leave nothing behind in the server: no task, no actor,
no object graph, no supervisor bookkeeping.

Each test churns connections through an in-process server, waits until every connection actor
has ended, then counts what is still alive (trio tasks by walking the task tree; objects of
the server's own types with ``gc``) against the count before the churn.
"""

from __future__ import annotations

import gc
import logging

import pytest
import trio
from trio_websocket import open_websocket_url
from wsproto.frame_protocol import Opcode

import actors
from examples.echo import Echo
from server import App, ConnectionOptions, websocket
from server.connection import Connection

from ..server.serving import Served, running
from .kit import RawClient, assert_echoes, client_frame, wait_until_no_connections

CHURN = 60
"""Connections per test: enough to tell a leak from noise, cheap enough to run every time."""


def alive(kind: type) -> int:
    gc.collect()
    return sum(1 for thing in gc.get_objects() if type(thing) is kind)


async def churn(server: Served, count: int = CHURN) -> None:
    """``count`` connections, every third reset mid-frame, the others closed cleanly."""
    for index in range(count):
        if index % 3 == 0:
            client = await RawClient.upgraded(server.port)
            await client.send(client_frame(Opcode.TEXT, b"half a frame")[:6])
            client.reset()
        else:
            with trio.fail_after(5):
                async with open_websocket_url(server.url()) as ws:
                    await ws.send_message(f"hello {index}")
                    assert await ws.get_message() == f"hello {index}"
    await wait_until_no_connections(server)


def echo_app(options: ConnectionOptions) -> App:
    return App([websocket("/", Echo, options=options)])


async def test_tasks_and_actors_return_to_baseline_after_churn(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running(echo_app(ConnectionOptions())) as server:
        await assert_echoes(server.url())
        await wait_until_no_connections(server)
        tasks, actor_count = actors.live_tasks(), server.live_actors()
        await churn(server)
        await trio.sleep(0.1)
        assert (actors.live_tasks(), server.live_actors()) == (tasks, actor_count)
        await assert_echoes(server.url())
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_a_closed_connection_is_freed_at_once() -> None:
    async with running(echo_app(ConnectionOptions(idle_timeout=60.0))) as server:
        await assert_echoes(server.url())
        await wait_until_no_connections(server)
        before = alive(Connection), alive(actors.Actor)
        await churn(server)
        assert (alive(Connection), alive(actors.Actor)) == before


async def test_without_an_idle_timeout_closed_connections_are_freed_at_once() -> None:
    """The same churn with no liveness timer: the object graph goes (the timer holds it)."""
    async with running(echo_app(ConnectionOptions(idle_timeout=None))) as server:
        await assert_echoes(server.url())
        await wait_until_no_connections(server)
        before = alive(Connection), alive(actors.Actor)
        await churn(server)
        assert (alive(Connection), alive(actors.Actor)) == before


async def test_the_supervisor_forgets_ended_connections() -> None:
    async with running(echo_app(ConnectionOptions(idle_timeout=None))) as server:
        await assert_echoes(server.url())
        await wait_until_no_connections(server)
        before = alive(actors.MonitorRef)
        await churn(server)
        assert alive(actors.MonitorRef) == before
