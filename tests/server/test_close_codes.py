"""Every way a connection ends: the close code the client sees and the reason ``terminate``
gets, exactly once, over real sockets (hand-built frames for what clients never send)."""

from __future__ import annotations

import contextlib
import logging
import re
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing
import wsproto.events as ev
from trio_websocket import ConnectionClosed

import actors
from server import (
    App,
    Binary,
    ClientClosed,
    ConnectionOptions,
    Frame,
    HandlerCrashed,
    IdleTimeout,
    ProtocolError,
    Request,
    ServerOptions,
    ServerShutdown,
    SlowClient,
    Text,
    Upgrade,
    broadcast,
    websocket,
)
from server.engine.connection import connection_of
from server.engine.liveness import Liveness, Verdict
from server.run.supervised import Server

from .kit import (
    WAIT,
    Recorded,
    Served,
    Terminations,
    assert_echoes,
    client,
    expect_close,
    frame,
    raw_client,
    running,
    running_clean,
    tcp_client,
    until_quiet,
    upgrade_request,
    warnings_logged,
)

OPCODE_CONTINUATION, OPCODE_TEXT, OPCODE_RESERVED, OPCODE_CLOSE, OPCODE_PING = (
    0x0,
    0x1,
    0x3,
    0x8,
    0x9,
)


class Echo(Recorded):
    def websocket_handle(self, frame: Frame, state: Any) -> tuple[Frame, Any]:
        return frame, state


def echo_app(log: Terminations, options: ConnectionOptions | None = None) -> App:
    return App([websocket("/", Echo(log), options=options)])


async def echoes(ws: Any, message: str) -> None:
    await ws.send_message(message)
    with trio.fail_after(WAIT):
        assert await ws.get_message() == message


# ---- the client ends it ---------------------------------------------------------------------


async def test_client_close_code_and_reason_reach_terminate_as_remote(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "corral.server")
    log = Terminations()
    async with running_clean(echo_app(log)) as served, client(served.url()) as ws:
        await echoes(ws, "hi")
        await ws.aclose(4000, "going away")
        assert ws.closed is not None and ws.closed.code == 4000
        call = await log.one()
    assert call.reason == ClientClosed(4000, "going away")
    assert not call.reason.abrupt
    assert re.search(
        r"closed 127\.0\.0\.1:\d+ / code=4000 reason=client closed 4000 'going away'", caplog.text
    )


async def test_client_dropping_tcp_is_remote_1006() -> None:
    log = Terminations()
    async with running_clean(echo_app(log)) as served:
        async with raw_client(served.port) as raw:
            await raw.send(ev.TextMessage("hi"))
            assert isinstance(await raw.next_event(), ev.TextMessage)
        call = await log.one()
    assert call.reason == ClientClosed(1006)
    assert call.reason.abrupt


# ---- liveness -------------------------------------------------------------------------------


async def test_idle_timeout_closes_with_1000_counting_from_the_last_data(
    virtual_clock: trio.testing.MockClock,
) -> None:
    log = Terminations()
    async with running_clean(echo_app(log, ConnectionOptions(idle_timeout=5.0))) as served:
        async with client(served.url()) as ws:
            await trio.sleep(3)
            await echoes(ws, "still here")
            active_at = trio.current_time()
            assert await expect_close(ws) == (1000, None)
            assert trio.current_time() - active_at == pytest.approx(5.0, abs=0.01)
        assert (await log.one()).reason == IdleTimeout()


async def test_a_client_that_never_answers_pings_is_dropped_after_pong_timeout(
    virtual_clock: trio.testing.MockClock,
) -> None:
    log = Terminations()
    options = ConnectionOptions(idle_timeout=None, ping_interval=2.0, pong_timeout=1.0)
    async with running_clean(echo_app(log, options)) as served:
        async with raw_client(served.port) as raw:
            started = trio.current_time()
            ping = await raw.next_event()
            assert isinstance(ping, ev.Ping)
            assert trio.current_time() - started == pytest.approx(2.0, abs=0.01)
            closing = await raw.next_event()  # no pong sent
            assert isinstance(closing, ev.CloseConnection) and closing.code == 1000
            assert trio.current_time() - started == pytest.approx(3.0, abs=0.01)
            await raw.send(closing.response())
            await raw.eof()
        assert (await log.one()).reason == IdleTimeout()


def test_a_pong_in_the_same_clock_tick_as_its_ping_counts() -> None:
    liveness = Liveness(None, ping_interval=2.0, pong_timeout=1.0, last_received=0.0)
    assert liveness.check(2.0) is Verdict.SEND_PING
    liveness.last_received = 2.0  # MockClock, or a coarse clock: no time passed
    assert liveness.check(3.0) is Verdict.ALIVE


async def test_a_client_answering_pings_stays_connected(
    virtual_clock: trio.testing.MockClock,
) -> None:
    log = Terminations()
    options = ConnectionOptions(idle_timeout=None, ping_interval=2.0, pong_timeout=1.0)
    async with running_clean(echo_app(log, options)) as served, client(served.url()) as ws:
        await trio.sleep(60)  # trio-websocket answers each ping
        await echoes(ws, "after a minute")
    assert (await log.one()).reason == ClientClosed(1000)


class Slow(Recorded):
    """Takes ten seconds over each text frame (the client keeps sending meanwhile)."""

    async def websocket_handle(self, frame: Frame, state: Any) -> tuple[Any, Any]:
        await trio.sleep(10)
        return frame, state


async def test_a_slow_handler_is_not_mistaken_for_an_idle_client(
    virtual_clock: trio.testing.MockClock,
) -> None:
    log = Terminations()
    options = ConnectionOptions(idle_timeout=5.0)
    app = App([websocket("/", Slow(log), options=options)])
    async with running_clean(app) as served, client(served.url()) as ws:
        for i in range(20):  # more than the connection reads ahead of its handler
            await ws.send_message(f"m{i}")
        for i in range(20):
            with trio.fail_after(60):
                assert await ws.get_message() == f"m{i}"
    assert (await log.one()).reason == ClientClosed(1000)


# ---- protocol errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad_frame", "code"),
    [
        (frame(OPCODE_RESERVED, b"what is this"), 1002),
        (frame(OPCODE_TEXT, b"unmasked", masked=False), 1002),
        (frame(OPCODE_TEXT, b"rsv bits", rsv=0b010), 1002),
        (frame(OPCODE_CONTINUATION, b"no message to continue"), 1002),
        (frame(OPCODE_PING, b"p" * 126), 1002),
        (frame(OPCODE_PING, b"fragmented", fin=False), 1002),
        (frame(OPCODE_CLOSE, struct.pack("!H", 1005)), 1002),
        (frame(OPCODE_TEXT, b"rsv1", rsv=0b100), 1002),
        (frame(OPCODE_TEXT, b"a", fin=False) + frame(OPCODE_TEXT, b"b"), 1002),
        (frame(OPCODE_CLOSE, struct.pack("!H", 999)), 1002),
        (frame(OPCODE_CLOSE, b"\x03"), 1002),
        (frame(OPCODE_TEXT, b"caf\xc3"), 1007),
        (frame(OPCODE_TEXT, b"\xff\xfe"), 1007),
        (frame(OPCODE_CLOSE, struct.pack("!H", 1000) + b"\xff"), 1007),
    ],
    ids=[
        "reserved-opcode",
        "unmasked",
        "rsv-without-extension",
        "lone-continuation",
        "ping-over-125-bytes",
        "fragmented-ping",
        "close-code-1005",
        "rsv1-without-extension",
        "new-message-inside-fragments",
        "close-code-999",
        "close-one-byte",
        "truncated-utf8",
        "not-utf8",
        "close-reason-not-utf8",
    ],
)
async def test_a_bad_frame_closes_with_its_protocol_error_code(
    bad_frame: bytes, code: int, caplog: pytest.LogCaptureFixture
) -> None:
    log = Terminations()
    async with running_clean(echo_app(log)) as served:
        async with raw_client(served.port) as raw:
            await raw.send(ev.TextMessage("fine"))
            assert isinstance(await raw.next_event(), ev.TextMessage)
            await raw.send_raw(bad_frame)
            closing = await raw.close_event()
            assert closing.code == code
            await raw.eof()
        reason = (await log.one()).reason
        await assert_echoes(served.url())  # the others are served all the while
    assert isinstance(reason, ProtocolError) and reason.code == code
    assert reason.detail
    assert warnings_logged(caplog) == []


async def test_a_message_over_max_message_size_closes_with_1009() -> None:
    log = Terminations()
    async with running_clean(echo_app(log, ConnectionOptions(max_message_size=1000))) as served:
        async with client(served.url()) as ws:
            await echoes(ws, "x" * 1000)
            await ws.send_message("x" * 5000)
            assert (await expect_close(ws))[0] == 1009
        async with raw_client(served.port) as raw:  # in fragments: the total counts
            for _ in range(3):
                await raw.send(ev.Message(b"y" * 400, message_finished=False))
            closing = await raw.close_event()
            assert closing.code == 1009
            await raw.eof()
        await log.wait(2)
    assert [reason.close_code for reason in log.reasons] == [1009, 1009]
    for reason in log.reasons:  # websockets' words for it
        assert isinstance(reason, ProtocolError) and "exceeds limit of 1000 bytes" in reason.detail


class Streamer(Echo):
    """Streams binary frames from the moment it starts, for as long as the client reads."""

    def websocket_init(self, state: Any) -> tuple[Any, Any]:
        actors.send(actors.self_address(), "more")
        return None, state

    def websocket_info(self, message: Any, state: Any) -> tuple[Any, Any]:
        actors.send(actors.self_address(), "more")
        return [Binary(b"z" * 1000)] * 4, state


WRITER_STATES = ["writer-busy", "writer-blocked"]
"""The server's writer when the client ends it: busy sending (the client reads on), or blocked
on a full socket (the client stopped reading: ``until_quiet`` waits until that is so)."""


@pytest.mark.parametrize("writer", WRITER_STATES)
async def test_a_bad_frame_while_the_server_streams_is_still_a_protocol_error(writer: str) -> None:
    log = Terminations()
    async with running_clean(App([websocket("/", Streamer(log))])) as served:
        async with raw_client(served.port) as raw:
            assert isinstance(await raw.next_event(), ev.BytesMessage)
            if writer == "writer-blocked":
                await until_quiet()
            await raw.send_raw(frame(OPCODE_RESERVED, b"bad"))
            assert (await raw.close_event()).code == 1002
            await raw.eof()
        reason = (await log.one()).reason
    assert isinstance(reason, ProtocolError) and reason.code == 1002


@pytest.mark.parametrize("writer", WRITER_STATES)
async def test_a_client_closing_while_the_server_streams_is_remote_with_its_code(
    writer: str,
) -> None:
    log = Terminations()
    async with running_clean(App([websocket("/", Streamer(log))])) as served:
        async with client(served.url()) as ws:
            with trio.fail_after(WAIT):
                assert await ws.get_message() == b"z" * 1000
            if writer == "writer-blocked":
                await until_quiet()
            await ws.aclose(4002, "enough")
        assert (await log.one()).reason == ClientClosed(4002, "enough")


# ---- crashes --------------------------------------------------------------------------------


class CrashIn(Recorded):
    """Crashes in the callback named by the ``crash`` query parameter (``init`` puts it in
    the state)."""

    def init(self, request: Request) -> Upgrade:
        return Upgrade(request.query_value("crash"))

    def websocket_init(self, state: Any) -> tuple[Any, Any]:
        where = state
        if where == "websocket_init":
            raise RuntimeError("bug in websocket_init")
        if where == "websocket_info":
            actors.send(actors.self_address(), "poke")
        return None, where

    def websocket_handle(self, frame: Frame, state: Any) -> tuple[Frame, Any]:
        if state == "websocket_handle":
            raise RuntimeError("bug in websocket_handle")
        return frame, state

    def websocket_info(self, message: Any, state: Any) -> tuple[Any, Any]:
        raise RuntimeError("bug in websocket_info")


@pytest.mark.parametrize("callback", ["websocket_init", "websocket_handle", "websocket_info"])
async def test_a_crashing_callback_closes_with_1011(
    callback: str, caplog: pytest.LogCaptureFixture
) -> None:
    log = Terminations()
    app = App([websocket("/", CrashIn(log))])
    async with running_clean(app) as served:
        async with client(served.url(f"/?crash={callback}")) as ws:
            with contextlib.suppress(ConnectionClosed):  # init and info crash before it
                await ws.send_message("trigger")
            assert await expect_close(ws) == (1011, None)
        call = await log.one()
    assert isinstance(call.reason, HandlerCrashed)
    assert str(call.reason.exception) == f"bug in {callback}"
    assert "handler CrashIn crashed on 127.0.0.1:" in caplog.text


class BadTerminate(Echo):
    def terminate(self, reason: Any, request: Request, state: Any) -> None:
        super().terminate(reason, request, state)
        raise RuntimeError("bug in terminate")


async def test_a_crashing_terminate_is_logged_and_the_server_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = Terminations()
    app = App([websocket("/", BadTerminate(log))])
    async with running_clean(app) as served:
        async with client(served.url()) as ws:
            await echoes(ws, "one")
        await log.one()
        async with client(served.url()) as ws:
            await echoes(ws, "two")
        await log.wait(2)
    assert log.reasons == [ClientClosed(1000), ClientClosed(1000)]
    assert caplog.text.count("terminate of BadTerminate crashed") == 2


# ---- the server ends it -------------------------------------------------------------------


async def test_shutdown_closes_every_client_with_1001_and_runs_each_terminate(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "corral.server")
    log = Terminations()
    async with running_clean(echo_app(log)) as served:
        async with client(served.url()) as a, client(served.url()) as b, client(served.url()) as c:
            for ws in (a, b, c):
                await echoes(ws, "hello")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(served.server.shutdown)
                for ws in (a, b, c):
                    assert await expect_close(ws) == (1001, None)
            assert served.server.stopped.is_set()
            calls = await log.wait(3)
    assert [call.reason for call in calls] == [ServerShutdown()] * 3
    assert (
        len(re.findall(r"closed 127\.0\.0\.1:\d+ / code=1001 reason=server shutdown", caplog.text))
        == 3
    )


async def test_shutdown_twice_is_harmless() -> None:
    log = Terminations()
    async with running_clean(echo_app(log)) as served, client(served.url()) as ws:
        await served.server.shutdown()
        await served.server.shutdown()
        assert await expect_close(ws) == (1001, None)
    assert log.reasons == [ServerShutdown()]


class Stuck(Echo):
    def websocket_handle(self, frame: Frame, state: Any) -> Any:
        if frame == Text("hang"):
            return trio.sleep_forever()
        return frame, state


async def test_a_handler_stuck_at_shutdown_is_killed_and_still_terminated_once(
    virtual_clock: trio.testing.MockClock,
) -> None:
    log = Terminations()
    # The kill comes after the *server's* send_timeout + close_timeout: every connection
    # actor is started (from one spec) before routing picks the route's options.
    options = ServerOptions(connection=ConnectionOptions(send_timeout=1.0, close_timeout=1.0))
    app = App([websocket("/", Stuck(log))])
    async with running_clean(app, options) as served, client(served.url()) as ws:
        await echoes(ws, "hello")
        await ws.send_message("hang")
        started = trio.current_time()
        await served.server.shutdown()
        assert trio.current_time() - started == pytest.approx(2.0, abs=0.01)  # the kill
        assert (await expect_close(ws))[0] == 1006
        assert log.reasons == [ServerShutdown()]


async def test_past_the_drain_timeout_the_rest_is_cancelled_and_still_terminated(
    virtual_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    log = Terminations()
    slow = ConnectionOptions(send_timeout=60.0, close_timeout=60.0)
    options = ServerOptions(drain_timeout=5.0, connection=slow)
    app = App([websocket("/", Stuck(log))])
    async with running_clean(app, options) as served, client(served.url()) as ws:
        await ws.send_message("hang")
        started = trio.current_time()
        await served.server.shutdown()
        assert trio.current_time() - started == pytest.approx(5.0, abs=0.01)
        assert served.server.stopped.is_set()
        assert (await expect_close(ws))[0] == 1006
        assert log.reasons == [ServerShutdown()]
    assert "drain timeout (5 s) reached: cancelling the rest" in caplog.text


async def test_cancelling_a_running_server_still_terminates_each_connection_once() -> None:
    log = Terminations()
    server = Server(echo_app(log), port=0)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.run)
        async with client(f"ws://127.0.0.1:{port}/") as a, client(f"ws://127.0.0.1:{port}/") as b:
            await echoes(a, "one")
            await echoes(b, "two")
            nursery.cancel_scope.cancel()
    assert log.reasons == [ServerShutdown(), ServerShutdown()]
    assert server.stopped.is_set()


class Busy(Echo):
    """Its websocket_info waits for the test, so its mailbox fills up."""

    release = trio.Event()

    async def websocket_info(self, message: Any, state: Any) -> tuple[Any, Any]:
        await self.release.wait()
        return None, state


async def test_shutdown_reaches_a_connection_whose_mailbox_is_full(
    virtual_clock: trio.testing.MockClock,
) -> None:
    log = Terminations()
    Busy.release = trio.Event()
    options = ConnectionOptions(mailbox_capacity=4, send_timeout=1.0, close_timeout=1.0)
    app = App([websocket("/", Busy(log))])
    async with (
        running_clean(app, ServerOptions(connection=options)) as served,
        client(served.url()) as ws,
    ):
        await echoes(ws, "connected")
        ((_, address),) = served.server.connections.which_children()
        node = served.server.node
        assert node is not None
        for message in range(
            100
        ):  # with checkpoints: the mailbox overflows while the handler waits
            node.send(address, message)
            await trio.sleep(0)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(served.server.shutdown)
            await trio.sleep(0.1)
            Busy.release.set()
            assert await expect_close(ws) == (1001, None)
    assert log.reasons == [ServerShutdown()]


async def test_a_client_close_sent_during_a_busy_callback_ends_it_whatever_fills_the_mailbox(
    virtual_clock: trio.testing.MockClock,
) -> None:
    log = Terminations()
    Busy.release = trio.Event()
    options = ConnectionOptions(
        mailbox_capacity=2, mailbox_overflow=actors.MailboxPolicy.DROP_OLDEST, close_timeout=1.0
    )
    app = App([websocket("/", Busy(log))])
    async with running_clean(app, ServerOptions(connection=options)) as served:
        node = served.server.node
        assert node is not None
        async with raw_client(served.port) as raw:
            ((_, address),) = served.server.connections.which_children()
            for message in range(3):  # the handler waits on the first; two are queued
                node.send(address, message)
                await trio.sleep(0)
            await raw.send(ev.CloseConnection(1000))
            for message in range(3, 8):  # the close waits in the socket, not the mailbox
                node.send(address, message)
            Busy.release.set()
            assert (await raw.close_event()).code == 1000
            await raw.eof()
        assert (await log.one()).reason == ClientClosed(1000)


CHUNK = b"x" * 65536


class Firehose(Echo):
    """On "flood", sends 64 KiB frames for as long as the client takes them."""

    def websocket_handle(self, frame: Frame, state: Any) -> tuple[Any, Any]:
        if frame == Text("flood"):
            actors.send(actors.self_address(), "more")
            return None, state
        return frame, state

    def websocket_info(self, message: Any, state: Any) -> tuple[Any, Any]:
        actors.send(actors.self_address(), "more")
        return [Binary(CHUNK)] * 8, state


async def test_a_client_that_stops_reading_is_dropped_after_send_timeout(
    virtual_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="corral.server")
    log = Terminations()
    options = ConnectionOptions(send_timeout=2.0, outbox_capacity=4)
    app = App([websocket("/", Firehose(log), options=options)])
    async with running_clean(app) as served, client(served.url()) as steady:
        async with raw_client(served.port) as stalled:
            await stalled.send(ev.TextMessage("flood"))
            call = await log.one()  # the flooded client, while it never reads
            assert call.reason == SlowClient("send timed out: the client stopped reading", 1006)
            await echoes(steady, "still served")
            with trio.fail_after(WAIT):  # what reached it ends with a reset, no close frame
                with contextlib.suppress(trio.BrokenResourceError):
                    while await stalled.stream.receive_some():
                        pass
        await echoes(steady, "still served")
    assert log.reasons[1:] == [ClientClosed(1000)]
    closes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("closed ")]
    assert "code=1006 (TCP aborted) reason=slow client 1006" in closes[0]  # not a claimed 1000


class Listener(Recorded):
    """Joins the group "listeners" and sends nothing."""

    def websocket_init(self, state: Any) -> tuple[Text, Any]:
        actors.join("listeners")
        return Text("joined"), state


async def test_a_client_too_slow_for_broadcasts_gets_a_whole_1013_after_a_frame_begun() -> None:
    """The outbox fills while the socket holds part of a frame: the frames not begun are
    dropped, the end of that one is not (the close frame would land inside it)."""
    log = Terminations()
    options = ConnectionOptions(outbox_capacity=4, idle_timeout=None)
    app = App([websocket("/", Listener(log), options=options)])
    big = "x" * 2**16
    async with (
        running_clean(app) as served,
        raw_client(served.port, receive_buffer=4096) as slow,
    ):
        assert await slow.message() == "joined"
        taken = sum(broadcast("listeners", big, node=served.node) for _ in range(64))
        assert 4 <= taken < 64
        messages, part = 0, ""
        while not isinstance(event := await slow.next_event(), ev.CloseConnection):
            assert isinstance(event, ev.TextMessage)
            part += event.data
            if event.message_finished:
                assert part == big
                messages, part = messages + 1, ""
        assert (event.code, part) == (1013, "") and messages <= taken
        await slow.send(event.response())
        call = await log.one()
    assert call.reason == SlowClient("outbox full: the client is not keeping up", 1013)


@contextlib.asynccontextmanager
async def slow_reader(served: Served) -> AsyncIterator[tuple[trio.SocketStream, actors.Address]]:
    """A TCP client with a 4 KiB receive buffer that has sent an upgrade request (the 101 is
    left unread), and the address of the connection serving it."""
    async with tcp_client(served.port, receive_buffer=4096) as stream:
        await stream.send_all(upgrade_request())
        ((_, address),) = served.server.connections.which_children()
        yield stream, address


async def test_a_client_sending_big_messages_and_never_reading_holds_one_outbox_of_bytes() -> None:
    big = 2**20
    options = ConnectionOptions(max_message_size=2 * big, outbox_bytes=2**18, send_timeout=30.0)
    app = App([websocket("/", Echo(Terminations()), options=options)])
    message = frame(0x2, b"x" * big)  # built once: masking in Python is slow
    async with running(app) as served:
        async with slow_reader(served) as (greedy, address):  # it reads nothing anyway
            actor = served.node.actor(address)
            assert actor is not None

            async def send_without_reading() -> None:
                for _ in range(32):  # 32 MiB of echoes owed, more than loopback's buffers
                    await greedy.send_all(message)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_without_reading)
                with trio.fail_after(WAIT):  # until the kernel's buffers are full
                    while (connection := connection_of(actor)) is None or not (
                        connection.core.queued_bytes
                    ):
                        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
                await trio.testing.wait_all_tasks_blocked(cushion=0.05)
                # One frame always fits in an empty outbox; past outbox_bytes the handler
                # waits, so the connection stops reading and the client's writes block.
                assert 0 < connection.core.queued_bytes <= big + 10
                nursery.cancel_scope.cancel()
