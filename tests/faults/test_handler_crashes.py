"""A handler that raises in any callback: the client gets 500 or 1011, everyone else is served.

Each test crashes one connection, checks what its client saw and what was logged, then shows
a second client still echoing on the same server.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url
from wsproto.frame_protocol import Opcode

import actors
from examples.echo import Echo
from server import (
    App,
    ConnectionOptions,
    Crash,
    Frame,
    Remote,
    Request,
    Response,
    ServerOptions,
    Shutdown,
    TerminateReason,
    Text,
    Upgrade,
    WebSocketHandler,
    websocket,
)
from server.serve import Server

from ..server.serving import HOST, running
from .kit import (
    STEP_TIMEOUT,
    RawClient,
    Recorder,
    assert_echoes,
    client_frame,
    http_exchange,
    upgrade_request,
)


class Boom(Exception):
    """The handler bug under test."""


class Crashy(WebSocketHandler[None]):
    """Echoes, but raises in the callback named by the route's ``:where`` binding.

    websocket_handle raises on the text "crash" and returns garbage on "bad return";
    websocket_info raises on any message, which the text "info" makes the connection send to
    itself.
    """

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    @property
    def where(self) -> object:
        return self.request.bindings.get("where")

    def init(self, request: Request) -> Upgrade | Response:
        if request.bindings.get("where") == "init":
            raise Boom("init")
        return Upgrade()

    def websocket_init(self, state: None) -> tuple[Any, None]:
        if self.where == "websocket_init":
            raise Boom("websocket_init")
        return None, state

    def websocket_handle(self, frame: Frame, state: None) -> Any:
        if isinstance(frame, Text) and frame.data == "crash" and self.where == "websocket_handle":
            raise Boom("websocket_handle")
        if isinstance(frame, Text) and frame.data == "bad return":
            return "not a (commands, state) tuple"
        if isinstance(frame, Text) and frame.data == "info":
            actor = actors.current_actor()
            actor.send(actor.address, "tick")
            return None, state
        return frame, state

    def websocket_info(self, message: Any, state: None) -> tuple[Any, None]:
        if self.where == "websocket_info":
            raise Boom("websocket_info")
        return None, state

    def terminate(self, reason: TerminateReason, request: Request, state: None) -> None:
        self.recorder.terminated(reason)
        if self.where == "terminate":
            raise Boom("terminate")


def crashy_app(recorder: Recorder) -> App:
    def factory() -> Crashy:
        return Crashy(recorder)

    return App([websocket("/", factory), websocket("/crash/:where", factory)])


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


async def close_code_after(url: str, send: str | None) -> int:
    """Connect, optionally send ``send``, and return the close code the server sends."""
    with trio.fail_after(STEP_TIMEOUT):
        async with open_websocket_url(url) as ws:
            if send is not None:
                await ws.send_message(send)
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
            assert closed.value.reason is not None
            return int(closed.value.reason.code)


async def test_init_raising_answers_500_and_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder()
    async with running(crashy_app(recorder)) as server:
        answer = await http_exchange(server.port, upgrade_request("/crash/init"))
        assert answer.status == 500
        assert b"Boom" not in answer.body  # details go to the log, not to the client
        await assert_echoes(server.url())
    assert any("init crashed" in message for message in errors(caplog))
    assert recorder.reasons == [Remote(1000)]  # only the echo client was upgraded


@pytest.mark.parametrize(
    ("where", "send"),
    [("websocket_init", None), ("websocket_handle", "crash"), ("websocket_info", "info")],
)
async def test_callback_raising_closes_with_1011_and_terminate_gets_crash(
    caplog: pytest.LogCaptureFixture, where: str, send: str | None
) -> None:
    recorder = Recorder()
    async with running(crashy_app(recorder)) as server:
        assert await close_code_after(server.url(f"/crash/{where}"), send) == 1011
        [reason] = await recorder.wait_for(1)
        assert isinstance(reason, Crash) and isinstance(reason.exception, Boom)
        assert str(reason.exception) == where
        await assert_echoes(server.url())
    logged = errors(caplog)
    assert any("crashed on" in m and "/crash/" + where in m for m in logged), logged
    assert not any("connection from" in m and "failed" in m for m in logged), logged


async def test_terminate_raising_is_logged_and_breaks_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder()
    async with running(crashy_app(recorder)) as server:
        with trio.fail_after(STEP_TIMEOUT):
            async with open_websocket_url(server.url("/crash/terminate")) as ws:
                await ws.send_message("hello")
                assert await ws.get_message() == "hello"
            assert ws.closed is not None and ws.closed.code == 1000  # the client's own close
        [reason] = await recorder.wait_for(1)
        assert reason == Remote(1000)
        await assert_echoes(server.url())
        await assert_echoes(server.url("/crash/terminate"))  # the same route still works
    logged = errors(caplog)
    assert sum("terminate of Crashy crashed" in m for m in logged) == 2, logged
    assert not any("connection from" in m and "failed" in m for m in logged), logged


async def test_callback_returning_garbage_closes_with_1011(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder()
    async with running(crashy_app(recorder)) as server:
        assert await close_code_after(server.url(), "bad return") == 1011
        [reason] = await recorder.wait_for(1)
        assert isinstance(reason, Crash) and isinstance(reason.exception, TypeError)
        await assert_echoes(server.url())
    assert any("must return (commands, state)" in repr(r.exc_info) for r in caplog.records)


class Stuck(WebSocketHandler[None]):
    """Never returns from websocket_handle."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def websocket_handle(self, frame: Frame, state: None) -> tuple[Any, None]:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    def terminate(self, reason: TerminateReason, request: Request, state: None) -> None:
        self.recorder.terminated(reason)


SHUTDOWN_TIME = 0.3 + 0.3
"""send_timeout + close_timeout: how long a connection gets to stop before it is killed."""
QUICK_SHUTDOWN = ServerOptions(
    connection=ConnectionOptions(send_timeout=0.3, close_timeout=0.3), drain_timeout=5.0
)


def stuck_app(recorder: Recorder) -> App:
    return App(
        [websocket("/", Echo), websocket("/stuck", lambda: Stuck(recorder))], options=QUICK_SHUTDOWN
    )


async def test_a_stuck_callback_does_not_hold_others_or_the_drain(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A callback that never returns cannot answer the shutdown: the connection is killed
    after its shutdown time; the client gets no close frame (TCP closed: 1006), terminate
    still runs (with Shutdown), and the drain ends long before its timeout."""
    recorder = Recorder()
    async with trio.open_nursery() as nursery:
        server = Server(stuck_app(recorder), host=HOST, port=0)
        port = await nursery.start(server.run)
        stuck = await RawClient.upgraded(port, "/stuck")
        await stuck.send(client_frame(Opcode.TEXT, b"hang"))
        await trio.sleep(0.1)
        await assert_echoes(f"ws://{HOST}:{port}/")  # the others are served meanwhile
        started = trio.current_time()
        nursery.start_soon(server.shutdown)
        assert await stuck.next_frame() is None  # TCP closed, no close frame
        with trio.fail_after(STEP_TIMEOUT):
            await server.stopped.wait()
        assert trio.current_time() - started < SHUTDOWN_TIME + 1.0
        assert recorder.reasons == [Shutdown()]


async def test_the_close_line_of_a_killed_connection_does_not_claim_1001(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="corral.server")
    recorder = Recorder()
    async with trio.open_nursery() as nursery:
        server = Server(stuck_app(recorder), host=HOST, port=0)
        port = await nursery.start(server.run)
        stuck = await RawClient.upgraded(port, "/stuck")
        await stuck.send(client_frame(Opcode.TEXT, b"hang"))
        await trio.sleep(0.1)
        nursery.start_soon(server.shutdown)
        assert await stuck.next_frame() is None
        with trio.fail_after(STEP_TIMEOUT):
            await server.stopped.wait()
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("closed ")]
    assert "code=1001" not in line, line
