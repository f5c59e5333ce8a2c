"""A handler's life over real sockets: the commands it returns, init's decisions, routing,
HTTP on the same port, and the server's limits. Each test checks what the client sees and
what ``terminate`` received."""

from __future__ import annotations

import socket
import struct
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
import wsproto.events as ev

import actors
from server import (
    App,
    Binary,
    ClientClosed,
    Close,
    ConnectionOptions,
    Frame,
    HandlerCrashed,
    HandlerStopped,
    IdleTimeout,
    Ping,
    Pong,
    ProtocolError,
    Request,
    Response,
    ServerOptions,
    SetOptions,
    Stop,
    TerminateReason,
    Text,
    Upgrade,
    http_route,
    static,
    websocket,
)

from .kit import (
    WAIT,
    Recorded,
    Terminations,
    client,
    expect_close,
    get,
    http_exchange,
    raw_client,
    rejection,
    running_clean,
    tcp_client,
    warnings_logged,
)

UPGRADE_HEAD = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


class Scripted(Recorded):
    """Answers each text message by name with a scripted return value; echoes the rest."""

    SCRIPT: dict[str, Any] = {
        "several": [Text("one"), Binary(b"two"), Text("three")],
        "ping": Ping(b"are you there"),
        "pong": Pong(b"heartbeat"),
        "close": [Text("last words"), Close(4001, "bye"), Text("never sent")],
        "stop": [Stop(), Text("never sent")],
        "shrink": [SetOptions(max_message_size=10), Text("shrunk")],
        "idle after 2 s": [SetOptions(idle_timeout=2.0), Text("set")],
        "never idle": [SetOptions(idle_timeout=None), Text("set")],
        "non-command": ["just a string"],
        "string as commands": "a bare string",
    }

    def websocket_init(self, state: Any) -> tuple[Any, Any]:
        return None, 0

    def websocket_handle(self, frame: Frame, state: Any) -> Any:
        if isinstance(frame, Text) and frame.data == "not a pair":
            return Text("no state")
        if isinstance(frame, Text) and frame.data in self.SCRIPT:
            return self.SCRIPT[frame.data], state + 1
        return frame, state + 1


def scripted_app(log: Terminations, options: ConnectionOptions | None = None) -> App:
    return App([websocket("/", Scripted(log), options=options)])


# ---- one handler object per route ------------------------------------------------------


class NotesItself(Scripted):
    """Scripted, noting the handler object each connection's websocket_init ran on."""

    def __init__(self, log: Terminations, ran_on: list[object]) -> None:
        super().__init__(log)
        self.ran_on = ran_on

    def websocket_init(self, state: Any) -> tuple[Any, Any]:
        self.ran_on.append(self)
        return super().websocket_init(state)


async def test_two_connections_on_one_route_share_the_handler_and_keep_their_own_state() -> None:
    log, ran_on = Terminations(), []
    handler = NotesItself(log, ran_on)
    async with running_clean(App([websocket("/", handler)])) as served:
        async with client(served.url()) as one, client(served.url()) as two:
            for ws in (one, two, two, one, two):  # interleaved: both open throughout
                await ws.send_message("x")
                with trio.fail_after(WAIT):
                    assert await ws.get_message() == "x"
        calls = await log.wait(2)
    assert ran_on == [handler, handler]
    assert sorted(call.state for call in calls) == [2, 3]  # messages each connection handled


def test_a_route_given_a_handler_class_says_to_pass_an_object() -> None:
    with pytest.raises(TypeError, match=r"pass Scripted\(\), not Scripted"):
        websocket("/", Scripted)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="takes a WebSocketHandler object"):
        websocket("/", lambda: Scripted(Terminations()))  # type: ignore[arg-type]


# ---- commands ---------------------------------------------------------------------------


async def test_several_text_and_binary_replies_in_one_return_arrive_in_order() -> None:
    log = Terminations()
    async with running_clean(scripted_app(log)) as served, client(served.url()) as ws:
        await ws.send_message("several")
        with trio.fail_after(WAIT):
            assert [await ws.get_message() for _ in range(3)] == ["one", b"two", "three"]
        await ws.send_message(b"\x00binary echo")
        with trio.fail_after(WAIT):
            assert await ws.get_message() == b"\x00binary echo"
    call = await log.one()
    assert call.reason == ClientClosed(1000)
    assert call.state == 2


async def test_ping_command_reaches_the_client_with_its_payload() -> None:
    log = Terminations()
    async with running_clean(scripted_app(log)) as served:
        async with raw_client(served.port) as raw:
            await raw.send(ev.TextMessage("ping"))
            event = await raw.next_event()
            assert isinstance(event, ev.Ping) and event.payload == b"are you there"
            await raw.send(event.response())  # an unexpected pong payload is ignored
            await raw.send(ev.TextMessage("still here"))
            echoed = await raw.next_event()
            assert isinstance(echoed, ev.TextMessage) and echoed.data == "still here"
            await raw.send(ev.CloseConnection(1000))
            assert isinstance(await raw.next_event(), ev.CloseConnection)
    assert (await log.one()).reason == ClientClosed(1000)


async def test_ping_command_is_answered_by_trio_websocket_clients() -> None:
    log = Terminations()
    async with running_clean(scripted_app(log)) as served, client(served.url()) as ws:
        await ws.send_message("ping")
        await ws.send_message("after the ping")
        with trio.fail_after(WAIT):
            assert await ws.get_message() == "after the ping"
    assert (await log.one()).reason == ClientClosed(1000)


async def test_pong_command_sends_an_unsolicited_pong() -> None:
    log = Terminations()
    async with running_clean(scripted_app(log)) as served, raw_client(served.port) as raw:
        await raw.send(ev.TextMessage("pong"))
        event = await raw.next_event()
        assert isinstance(event, ev.Pong) and event.payload == b"heartbeat"
        await raw.send(ev.CloseConnection(1000))
        assert isinstance(await raw.next_event(), ev.CloseConnection)
    assert (await log.one()).reason == ClientClosed(1000)


async def test_close_command_sends_its_code_and_reason_and_nothing_after_it() -> None:
    log = Terminations()
    async with running_clean(scripted_app(log)) as served:
        async with client(served.url()) as ws:
            await ws.send_message("close")
            with trio.fail_after(WAIT):
                assert await ws.get_message() == "last words"
            assert await expect_close(ws) == (4001, "bye")
        call = await log.one()
        assert call.reason == HandlerStopped()
        async with raw_client(served.port) as raw:
            await raw.send(ev.TextMessage("close"))
            events = [await raw.next_event(), await raw.next_event()]
            assert isinstance(events[0], ev.TextMessage) and events[0].data == "last words"
            assert isinstance(events[1], ev.CloseConnection)
            assert (events[1].code, events[1].reason) == (4001, "bye")
            await raw.send(events[1].response())
            await raw.eof()  # and no "never sent" before the server closed TCP
        await log.wait(2)
    assert log.reasons == [HandlerStopped(), HandlerStopped()]


async def test_stop_closes_with_1000_and_drops_later_frames() -> None:
    log = Terminations()
    async with running_clean(scripted_app(log)) as served, raw_client(served.port) as raw:
        await raw.send(ev.TextMessage("stop"))
        closing = await raw.next_event()
        assert isinstance(closing, ev.CloseConnection) and closing.code == 1000
        await raw.send(closing.response())
        await raw.eof()
    call = await log.one()
    assert call.reason == HandlerStopped()
    assert call.state == 1


async def test_set_options_max_message_size_applies_to_the_next_message() -> None:
    log = Terminations()
    async with running_clean(scripted_app(log)) as served, client(served.url()) as ws:
        await ws.send_message("x" * 50)
        with trio.fail_after(WAIT):
            assert await ws.get_message() == "x" * 50
        await ws.send_message("shrink")
        with trio.fail_after(WAIT):
            assert await ws.get_message() == "shrunk"
        await ws.send_message("x" * 11)
        assert (await expect_close(ws))[0] == 1009
    reason = (await log.one()).reason
    assert isinstance(reason, ProtocolError) and reason.code == 1009


async def test_set_options_idle_timeout_starts_an_idle_timer(
    virtual_clock: trio.testing.MockClock,
) -> None:
    log = Terminations()
    options = ConnectionOptions(idle_timeout=None)
    async with running_clean(scripted_app(log, options)) as served, client(served.url()) as ws:
        await trio.sleep(1000)  # no idle timeout yet
        await ws.send_message("idle after 2 s")
        with trio.fail_after(WAIT):
            assert await ws.get_message() == "set"
        set_at = trio.current_time()
        assert await expect_close(ws) == (1000, None)
        assert trio.current_time() - set_at == pytest.approx(2.0, abs=0.01)
    assert (await log.one()).reason == IdleTimeout()


async def test_set_options_idle_timeout_none_disables_it(
    virtual_clock: trio.testing.MockClock,
) -> None:
    log = Terminations()
    options = ConnectionOptions(idle_timeout=2.0)
    async with running_clean(scripted_app(log, options)) as served, client(served.url()) as ws:
        await ws.send_message("never idle")
        with trio.fail_after(WAIT):
            assert await ws.get_message() == "set"
        await trio.sleep(1000)
        await ws.send_message("still open")
        with trio.fail_after(WAIT):
            assert await ws.get_message() == "still open"
    assert (await log.one()).reason == ClientClosed(1000)


class ClosesFrom(Recorded):
    """Says hello and closes from the callback named by the ``from`` query parameter (``init``
    puts it in the state)."""

    def init(self, request: Request) -> Upgrade:
        return Upgrade(request.query_value("from"))

    def websocket_init(self, state: Any) -> tuple[Any, Any]:
        if state == "websocket_init":
            return [Text("hello"), Close(4003, "from init")], "init"
        actors.send(actors.self_address(), "poke")
        return None, "init"

    def websocket_info(self, message: Any, state: Any) -> tuple[Any, Any]:
        return [Text("hello"), Stop()], "info"


@pytest.mark.parametrize(
    ("callback", "seen", "state"),
    [("websocket_init", (4003, "from init"), "init"), ("websocket_info", (1000, None), "info")],
)
async def test_init_and_info_can_send_and_close_too(
    callback: str, seen: tuple[int, str | None], state: str
) -> None:
    log = Terminations()
    async with running_clean(App([websocket("/", ClosesFrom(log))])) as served:
        async with client(served.url(f"/?from={callback}")) as ws:
            with trio.fail_after(WAIT):
                assert await ws.get_message() == "hello"
            assert await expect_close(ws) == seen
        call = await log.one()
    assert (call.reason, call.state) == (HandlerStopped(), state)


class AsyncEverything(Recorded):
    """Every callback a coroutine, each one awaiting something first."""

    async def init(self, request: Request) -> Upgrade:
        await trio.lowlevel.checkpoint()
        return Upgrade(["init"])

    async def websocket_init(self, state: list[str]) -> tuple[Any, list[str]]:
        await trio.lowlevel.checkpoint()
        actors.send(actors.self_address(), "from the system")
        return Text("welcome"), [*state, "websocket_init"]

    async def websocket_handle(self, frame: Frame, state: list[str]) -> tuple[Any, list[str]]:
        await trio.sleep(0.01)
        return Text(f"handled {frame.data!r}"), [*state, "websocket_handle"]

    async def websocket_info(self, message: Any, state: list[str]) -> tuple[Any, list[str]]:
        await trio.lowlevel.checkpoint()
        return Text(f"info {message}"), [*state, "websocket_info"]

    async def terminate(self, reason: Any, request: Request, state: list[str]) -> None:
        await trio.lowlevel.checkpoint()
        super().terminate(reason, request, state)


async def test_async_callbacks_work_like_sync_ones() -> None:
    log = Terminations()
    app = App([websocket("/", AsyncEverything(log))])
    async with running_clean(app) as served, client(served.url()) as ws:
        with trio.fail_after(WAIT):
            assert await ws.get_message() == "welcome"
            assert await ws.get_message() == "info from the system"
            await ws.send_message("hi")
            assert await ws.get_message() == "handled 'hi'"
    call = await log.one()
    assert call.reason == ClientClosed(1000)
    assert call.state == ["init", "websocket_init", "websocket_info", "websocket_handle"]


@pytest.mark.parametrize(
    ("message", "complaint"),
    [
        ("not a pair", "websocket_handle must return (commands, state), not Text("),
        ("non-command", "'just a string' is not a command: return Text, Binary"),
        ("string as commands", "commands must be a command or a list of commands"),
    ],
)
async def test_a_bad_return_value_closes_with_1011_and_a_clear_type_error(
    message: str, complaint: str
) -> None:
    log = Terminations()
    async with running_clean(scripted_app(log)) as served, client(served.url()) as ws:
        await ws.send_message(message)
        assert (await expect_close(ws))[0] == 1011
    reason = (await log.one()).reason
    assert isinstance(reason, HandlerCrashed) and isinstance(reason.exception, TypeError)
    assert complaint in str(reason.exception)


class CrashOn(Recorded):
    """Crashes on "crash"; echoes everything else."""

    def websocket_handle(self, frame: Frame, state: Any) -> tuple[Frame, Any]:
        if frame.data == "crash":
            raise RuntimeError("handler bug")
        return frame, state


async def test_one_handler_crashing_leaves_other_connections_serving() -> None:
    log = Terminations()
    app = App([websocket("/", CrashOn(log))])
    async with running_clean(app) as served, client(served.url()) as steady:
        async with client(served.url()) as crashing:
            await steady.send_message("before")
            await crashing.send_message("crash")
            assert (await expect_close(crashing))[0] == 1011
        crashed = await log.one()
        assert isinstance(crashed.reason, HandlerCrashed)
        assert str(crashed.reason.exception) == "handler bug"
        with trio.fail_after(WAIT):
            assert await steady.get_message() == "before"
            await steady.send_message("after")
            assert await steady.get_message() == "after"
        assert len(log.calls) == 1
    await log.wait(2)
    assert log.reasons[1] == ClientClosed(1000)


class CrashOnNoted(CrashOn):
    """CrashOn that notes its connection actor's address, and stops on "stop"."""

    addresses: list[actors.Address] = []

    def websocket_init(self, state: Any) -> tuple[None, Any]:
        self.addresses.append(actors.self_address())
        return None, state

    def websocket_handle(self, frame: Frame, state: Any) -> tuple[Any, Any]:
        if frame.data == "stop":
            return Stop(), state
        return super().websocket_handle(frame, state)


@pytest.mark.parametrize(
    ("ending", "terminated", "exited"),
    [
        ("stop", HandlerStopped, actors.Normal),
        ("client close", ClientClosed, actors.Normal),
        ("crash", HandlerCrashed, actors.Crash),
    ],
)
async def test_a_connection_actors_exit_reason_beside_its_terminate_reason(
    ending: str, terminated: type[TerminateReason], exited: type[actors.ExitReason]
) -> None:
    CrashOnNoted.addresses = []
    log = Terminations()
    app = App([websocket("/", CrashOnNoted(log))])
    async with running_clean(app) as served, client(served.url()) as ws:
        await ws.send_message("hello")
        assert await ws.get_message() == "hello"
        (address,) = CrashOnNoted.addresses
        async with trio.open_nursery() as nursery:
            ended: list[actors.ExitReason] = []

            async def wait_for_the_end() -> None:
                ended.append(await served.node.wait(address))

            nursery.start_soon(wait_for_the_end)
            if ending == "client close":
                await ws.aclose()
            else:
                await ws.send_message(ending)
        call = await log.one()
    (reason,) = ended
    assert type(call.reason) is terminated
    assert type(reason) is exited
    if isinstance(reason, actors.Crash):
        assert str(reason.exception) == "handler bug"


# ---- init ---------------------------------------------------------------------------------


class Gatekeeper(Recorded):
    """init decides from the request: refuse, crash, pick a subprotocol, add headers."""

    def init(self, request: Request) -> Upgrade | Response:
        token = request.query_value("token")
        if token is None:
            return Response(401, [("WWW-Authenticate", "Bearer")], b"who are you?")
        if token == "banned":
            return Response.text(403, "go away")
        if token == "crash":
            raise RuntimeError("init bug")
        if token == "garbage":
            return "yes please"  # type: ignore[return-value]
        if token == "unoffered":
            return Upgrade(subprotocol="never.proposed")
        chosen = "chat.v2" if "chat.v2" in request.subprotocols else None
        state = {
            "room": request.bindings.get("room"),
            "token": token,
            "proposed": request.subprotocols,
        }
        return Upgrade(state, subprotocol=chosen, headers=(("Set-Cookie", "seen=1"),))

    def websocket_init(self, state: dict[str, Any]) -> tuple[Any, Any]:
        return Text(f"room={state['room']} token={state['token']}"), state


def gate_app(log: Terminations, options: ServerOptions | None = None) -> App:
    routes = [websocket("/chat/:room", Gatekeeper(log))]
    return App(routes, options=options or ServerOptions())


async def test_init_refusing_with_a_response_sends_its_status_headers_and_body() -> None:
    log = Terminations()
    async with running_clean(gate_app(log)) as served:
        refused = await rejection(served.url("/chat/lobby"))
        assert refused.status_code == 401
        assert (b"www-authenticate", b"Bearer") in refused.headers
        assert refused.body == b"who are you?"
        assert (await rejection(served.url("/chat/lobby?token=banned"))).status_code == 403
    assert log.calls == []  # terminate runs only after an upgrade


@pytest.mark.parametrize("token", ["crash", "garbage", "unoffered"])
async def test_init_crashing_or_answering_nonsense_gets_500(token: str) -> None:
    log = Terminations()
    async with running_clean(gate_app(log)) as served:
        refused = await rejection(served.url(f"/chat/lobby?token={token}"))
        assert refused.status_code == 500
    assert log.calls == []


async def test_upgrade_passes_bindings_query_subprotocol_and_extra_headers() -> None:
    log = Terminations()
    url = "/chat/kitchen?token=abc"
    async with running_clean(gate_app(log)) as served:
        async with client(served.url(url), subprotocols=["chat.v1", "chat.v2"]) as ws:
            assert ws.subprotocol == "chat.v2"
            assert (b"set-cookie", b"seen=1") in ws.handshake_headers
            with trio.fail_after(WAIT):
                assert await ws.get_message() == "room=kitchen token=abc"
        call = await log.one()
        assert call.reason == ClientClosed(1000)
        assert call.state["proposed"] == ("chat.v1", "chat.v2")
        assert call.request.bindings == {"room": "kitchen"}
        assert call.request.query_value("token") == "abc"
        async with client(served.url(url)) as ws:
            assert ws.subprotocol is None
            with trio.fail_after(WAIT):
                assert await ws.get_message() == "room=kitchen token=abc"
        await log.wait(2)


async def test_origin_outside_the_allow_list_gets_403() -> None:
    log = Terminations()
    options = ServerOptions(allowed_origins=["https://good.example"])
    async with running_clean(gate_app(log, options)) as served:
        url = served.url("/chat/lobby?token=t")
        refused = await rejection(url, extra_headers=[("Origin", "https://evil.example")])
        assert refused.status_code == 403
        assert log.calls == []
        async with client(url, extra_headers=[("Origin", "https://GOOD.example")]) as ws:
            with trio.fail_after(WAIT):
                assert await ws.get_message() == "room=lobby token=t"
    assert log.reasons == [ClientClosed(1000)]


class Narrow(Recorded):
    def init(self, request: Request) -> Upgrade:
        return Upgrade(options=ConnectionOptions(max_message_size=8))

    def websocket_handle(self, frame: Frame, state: Any) -> tuple[Frame, Any]:
        return frame, state


async def test_options_in_upgrade_replace_the_routes_options() -> None:
    log = Terminations()
    app = App([websocket("/", Narrow(log), options=ConnectionOptions())])
    async with running_clean(app) as served, client(served.url()) as ws:
        await ws.send_message("8 bytes!")
        with trio.fail_after(WAIT):
            assert await ws.get_message() == "8 bytes!"
        await ws.send_message("nine byte")
        assert (await expect_close(ws))[0] == 1009
    reason = (await log.one()).reason
    assert isinstance(reason, ProtocolError) and reason.code == 1009
    assert "exceeds limit of 8 bytes" in reason.detail


class Hesitant(Recorded):
    """init waits until the test lets it answer."""

    answer = trio.Event()

    async def init(self, request: Request) -> Upgrade:
        await self.answer.wait()
        return Upgrade()


async def test_a_client_leaving_before_the_101_is_no_error_and_no_terminate(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = Terminations()
    Hesitant.answer = trio.Event()
    async with running_clean(App([websocket("/", Hesitant(log))])) as served:
        async with tcp_client(served.port) as leaving:
            await leaving.send_all(UPGRADE_HEAD)
            leaving.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        Hesitant.answer.set()  # the 101 now meets a reset connection
        with trio.fail_after(WAIT):
            while served.server.front_door.statistics().active_connections:
                await trio.sleep(0.01)
    assert log.calls == []
    assert warnings_logged(caplog) == []


# ---- routing and HTTP on the same port ----------------------------------------------------


def hello(request: Request) -> Response:
    return Response.text(200, f"hello {request.bindings['name']}")


def http_app(log: Terminations, directory: Path) -> App:
    return App(
        [
            websocket("/ws", Scripted(log)),
            http_route("/hello/:name", hello),
            static("/static", directory),
        ]
    )


async def test_http_routes_static_files_and_websocket_share_one_port(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<h1>corral</h1>")
    (tmp_path / "notes.txt").write_text("moo")
    log = Terminations()
    async with running_clean(http_app(log, tmp_path)) as served:
        port = served.port
        assert await http_exchange(port, get("/hello/ann")) == (
            200,
            {
                "content-type": "text/plain; charset=utf-8",
                "content-length": "10",
                "connection": "close",
            },
            b"hello ann\n",
        )
        status, headers, body = await http_exchange(port, get("/static/notes.txt"))
        assert (status, headers["content-type"], body) == (200, "text/plain; charset=utf-8", b"moo")
        status, _, body = await http_exchange(port, get("/static/"))
        assert (status, body) == (200, b"<h1>corral</h1>")
        assert (await http_exchange(port, get("/static/../secret")))[0] == 404
        async with client(served.url("/ws")) as ws:
            await ws.send_message("several")
            with trio.fail_after(WAIT):
                assert await ws.get_message() == "one"
    assert log.reasons == [ClientClosed(1000)]


async def test_unknown_path_gets_404_for_http_and_websocket_clients(tmp_path: Path) -> None:
    log = Terminations()
    async with running_clean(http_app(log, tmp_path)) as served:
        assert (await http_exchange(served.port, get("/nowhere")))[0] == 404
        assert (await rejection(served.url("/nowhere"))).status_code == 404
    assert log.calls == []


async def test_plain_get_on_a_websocket_route_gets_426(tmp_path: Path) -> None:
    log = Terminations()
    async with running_clean(http_app(log, tmp_path)) as served:
        status, headers, _ = await http_exchange(served.port, get("/ws"))
        assert (status, headers["upgrade"]) == (426, "websocket")
    assert log.calls == []


# ---- server limits --------------------------------------------------------------------------


async def test_over_max_connections_a_new_client_gets_503_until_one_leaves() -> None:
    log = Terminations()
    async with running_clean(scripted_app(log), ServerOptions(max_connections=1)) as served:
        async with client(served.url()) as first:
            refused = await rejection(served.url())
            assert refused.status_code == 503
            assert (b"retry-after", b"1") in refused.headers
            await first.send_message("still served")
            with trio.fail_after(WAIT):
                assert await first.get_message() == "still served"
        await log.one()
        with trio.fail_after(WAIT):
            while served.server.front_door.statistics().active_connections:
                await trio.sleep(0.01)
        async with client(served.url()) as second:
            await second.send_message("my turn")
            with trio.fail_after(WAIT):
                assert await second.get_message() == "my turn"
    assert log.reasons == [ClientClosed(1000), ClientClosed(1000)]
    assert served.server.front_door.statistics().refused_connections == 1


async def test_handshake_timeout_closes_a_silent_client(
    virtual_clock: trio.testing.MockClock,
) -> None:
    log = Terminations()
    options = ServerOptions(handshake_timeout=3.0)
    async with (
        running_clean(scripted_app(log), options) as served,
        tcp_client(served.port) as silent,
    ):
        await silent.send_all(b"GET / HTTP/1.1\r\n")  # an unfinished head
        started = trio.current_time()
        with trio.fail_after(WAIT):
            assert await silent.receive_some() == b""
        assert trio.current_time() - started == pytest.approx(3.0, abs=0.01)
    assert log.calls == []
