"""A handler that raises in any callback: the client gets 500 or 1011, everyone else is served.

Each test crashes one connection, checks what its client saw and what was logged, then shows
a second client still echoing on the same server.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
import wsproto.events as ev

import actors
from examples.echo import Echo
from server import (
    App,
    ClientClosed,
    ConnectionOptions,
    Frame,
    HandlerCrashed,
    Request,
    Response,
    ServerOptions,
    ServerShutdown,
    TerminateReason,
    Text,
    Upgrade,
    websocket,
)

from ..server.kit import (
    RawClient,
    Recorded,
    Served,
    Terminations,
    assert_echoes,
    client,
    expect_close,
    http_exchange,
    raw_client,
    running,
    upgrade_request,
    warnings_logged,
)


class Boom(Exception):
    """The handler bug under test."""


class Crashy(Recorded):
    """Echoes, but raises in the callback named by the route's ``:where`` binding.

    websocket_handle raises on the text "crash" and returns garbage on "bad return";
    websocket_info raises on any message, which the text "info" makes the connection send to
    itself. The state is that binding (None on ``/``).
    """

    def init(self, request: Request) -> Upgrade | Response:
        where = request.bindings.get("where")
        if where == "init":
            raise Boom("init")
        return Upgrade(where)

    def websocket_init(self, state: object) -> tuple[Any, object]:
        if state == "websocket_init":
            raise Boom("websocket_init")
        return None, state

    def websocket_handle(self, frame: Frame, state: object) -> Any:
        if isinstance(frame, Text) and frame.data == "crash" and state == "websocket_handle":
            raise Boom("websocket_handle")
        if isinstance(frame, Text) and frame.data == "bad return":
            return "not a (commands, state) tuple"
        if isinstance(frame, Text) and frame.data == "info":
            actor = actors.current_actor()
            actor.send(actor.address, "tick")
            return None, state
        return frame, state

    def websocket_info(self, message: Any, state: object) -> tuple[Any, object]:
        if state == "websocket_info":
            raise Boom("websocket_info")
        return None, state

    def terminate(self, reason: TerminateReason, request: Request, state: object) -> None:
        super().terminate(reason, request, state)
        if state == "terminate":
            raise Boom("terminate")


def crashy_app(log: Terminations) -> App:
    return App([websocket("/", Crashy(log)), websocket("/crash/:where", Crashy(log))])


async def close_code_after(url: str, send: str | None) -> int:
    """Connect, optionally send ``send``, and return the close code the server sends."""
    async with client(url) as ws:
        if send is not None:
            await ws.send_message(send)
        code, _ = await expect_close(ws)
        return code


async def test_init_raising_answers_500_and_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    log = Terminations()
    async with running(crashy_app(log)) as server:
        answer = await http_exchange(server.port, upgrade_request("/crash/init"))
        assert answer.status == 500
        assert b"Boom" not in answer.body  # details go to the log, not to the client
        await assert_echoes(server.url())
    assert any("init crashed" in message for message in warnings_logged(caplog))
    assert log.reasons == [ClientClosed(1000)]  # only the echo client was upgraded


@pytest.mark.parametrize(
    ("where", "send"),
    [("websocket_init", None), ("websocket_handle", "crash"), ("websocket_info", "info")],
)
async def test_callback_raising_closes_with_1011_and_terminate_gets_crash(
    caplog: pytest.LogCaptureFixture, where: str, send: str | None
) -> None:
    log = Terminations()
    async with running(crashy_app(log)) as server:
        assert await close_code_after(server.url(f"/crash/{where}"), send) == 1011
        reason = (await log.one()).reason
        assert isinstance(reason, HandlerCrashed) and isinstance(reason.exception, Boom)
        assert str(reason.exception) == where
        await assert_echoes(server.url())
    logged = warnings_logged(caplog)
    assert any("crashed on" in m and "/crash/" + where in m for m in logged), logged
    assert not any("connection from" in m and "failed" in m for m in logged), logged


async def test_terminate_raising_is_logged_and_breaks_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = Terminations()
    async with running(crashy_app(log)) as server:
        async with client(server.url("/crash/terminate")) as ws:
            await ws.send_message("hello")
            assert await ws.get_message() == "hello"
        assert ws.closed is not None and ws.closed.code == 1000  # the client's own close
        reason = (await log.one()).reason
        assert reason == ClientClosed(1000)
        await assert_echoes(server.url())
        await assert_echoes(server.url("/crash/terminate"))  # the same route still works
    logged = warnings_logged(caplog)
    assert sum("terminate of Crashy crashed" in m for m in logged) == 2, logged
    assert not any("connection from" in m and "failed" in m for m in logged), logged


async def test_callback_returning_garbage_closes_with_1011(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = Terminations()
    async with running(crashy_app(log)) as server:
        assert await close_code_after(server.url(), "bad return") == 1011
        reason = (await log.one()).reason
        assert isinstance(reason, HandlerCrashed) and isinstance(reason.exception, TypeError)
        await assert_echoes(server.url())
    assert any("must return (commands, state)" in repr(r.exc_info) for r in caplog.records)


class Stuck(Recorded):
    """Never returns from websocket_handle; ``entered`` is set once it is stuck there."""

    def __init__(self, log: Terminations, entered: trio.Event) -> None:
        super().__init__(log)
        self.entered = entered

    async def websocket_handle(self, frame: Frame, state: None) -> tuple[Any, None]:
        self.entered.set()
        await trio.sleep_forever()
        raise AssertionError("unreachable")


SHUTDOWN_TIME = 0.3 + 0.3
"""send_timeout + close_timeout: how long a connection gets to stop before it is killed."""
QUICK_SHUTDOWN = ServerOptions(
    connection=ConnectionOptions(send_timeout=0.3, close_timeout=0.3), drain_timeout=5.0
)


@asynccontextmanager
async def stuck_connection(log: Terminations) -> AsyncIterator[tuple[Served, RawClient]]:
    """A server (echo at ``/``) with one client whose handler is stuck in websocket_handle."""
    entered = trio.Event()
    app = App([websocket("/", Echo()), websocket("/stuck", Stuck(log, entered))])
    async with running(app, QUICK_SHUTDOWN) as served, raw_client(served.port, "/stuck") as stuck:
        await stuck.send(ev.TextMessage("hang"))
        await entered.wait()
        yield served, stuck


async def shut_down(served: Served, stuck: RawClient) -> list[ev.Event]:
    """Shut the server down; what the stuck client got before TCP ended."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(served.server.shutdown)
        events = await stuck.eof()
    assert served.server.stopped.is_set()
    return events


async def test_a_stuck_callback_does_not_hold_others_or_the_drain(
    virtual_clock: trio.testing.MockClock,
) -> None:
    """A callback that never returns cannot answer the shutdown: the connection is killed
    after its shutdown time; the client gets no close frame (TCP closed: 1006), terminate
    still runs (with ServerShutdown), and the drain ends long before its timeout."""
    log = Terminations()
    async with stuck_connection(log) as (served, stuck):
        await assert_echoes(served.url())  # the others are served meanwhile
        started = trio.current_time()
        assert await shut_down(served, stuck) == []  # TCP closed, no close frame
        assert trio.current_time() - started == pytest.approx(SHUTDOWN_TIME, abs=0.01)
        assert log.reasons == [ServerShutdown()]


async def test_the_close_line_of_a_killed_connection_does_not_claim_1001(
    virtual_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="corral.server")
    log = Terminations()
    async with stuck_connection(log) as (served, stuck):
        assert await shut_down(served, stuck) == []
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("closed ")]
    assert "code=1001" not in line, line
