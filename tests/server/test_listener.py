"""The front door over real sockets: routing answers, limits, timeouts, TLS, hand-over."""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import attrs
import pytest
import trio
import trio.testing
import trustme
from trio_websocket import ConnectionRejected, open_websocket_url

from server.engine.session import NEED_DATA, Session
from server.front.files import health_check
from server.front.handshake import accept
from server.front.http import DEFAULT_MAX_HEAD_BYTES, Request, Response
from server.front.listener import (
    ACCEPT_BATCH,
    FrontDoor,
    accept_into,
    make_ssl_context,
    open_listeners,
    serve_tcp,
)
from server.front.router import Match, Route, Router
from server.termination import TerminateReason

from .kit import get, tcp_client
from .kit import http_exchange as exchange

UPGRADE = (
    "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
)


@attrs.define
class Echo:
    """An on_websocket callback that records what it was handed and echoes messages."""

    calls: list[tuple[Request, Match]] = attrs.Factory(list)

    async def __call__(
        self, stream: trio.abc.Stream, request: Request, rest: bytes, match: Match
    ) -> None:
        self.calls.append((request, match))
        await stream.send_all(accept(request).response)
        session = Session(max_message_size=2**20)
        session.receive_data(rest)
        while True:
            event = session.next_event()
            owed = session.data_to_send()
            if owed:
                await stream.send_all(owed)
            if isinstance(event, TerminateReason):
                return
            if event is NEED_DATA:
                data = await stream.receive_some()
                if data:
                    session.receive_data(data)
                else:
                    session.receive_eof()
                continue
            await stream.send_all(session.encode(event))


async def crashing_handler(request: Request) -> Response:
    raise RuntimeError("handler bug")


async def greeting(request: Request) -> Response:
    return Response.text(200, f"hello {request.bindings['name']}")


def routes() -> Router:
    return Router(
        [
            Route("/chat/:room", "chat-handler"),
            Route("/healthz", health_check, kind="http"),
            Route("/hello/:name", greeting, kind="http"),
            Route("/crash", crashing_handler, kind="http"),
        ]
    )


async def start(
    nursery: trio.Nursery,
    on_websocket: Callable[..., Awaitable[None]] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    **limits: Any,
) -> tuple[int, FrontDoor]:
    front_door = FrontDoor(routes(), on_websocket or Echo(), **limits)
    serve = partial(serve_tcp, front_door.handle, host="127.0.0.1", port=0, ssl_context=ssl_context)
    listeners = await nursery.start(serve)
    listener = listeners[0]
    socket_listener = listener.transport_listener if ssl_context else listener
    return socket_listener.socket.getsockname()[1], front_door


async def until_idle(front_door: FrontDoor) -> None:
    """Wait for the server side of finished exchanges to end (it lingers for the peer's EOF)."""
    with trio.fail_after(5):
        while front_door.statistics().active_connections:
            await trio.sleep(0.01)


def upgrade(path: str = "/chat/lobby", extra: str = "Sec-WebSocket-Version: 13\r\n") -> bytes:
    return UPGRADE.format(path=path, extra=extra).encode()


async def test_websocket_upgrade_is_handed_to_on_websocket_with_bindings(
    nursery: trio.Nursery,
) -> None:
    echo = Echo()
    port, _ = await start(nursery, echo)
    async with open_websocket_url(f"ws://127.0.0.1:{port}/chat/lobby?nick=ann") as ws:
        await ws.send_message("hi")
        assert await ws.get_message() == "hi"
    [(request, match)] = echo.calls
    assert request.bindings == {"room": "lobby"}
    assert request.query_value("nick") == "ann"
    assert request.scheme == "ws"
    assert request.peer is not None and request.peer[0] == "127.0.0.1"
    assert match.route.target == "chat-handler"


async def test_plain_get_on_websocket_route_gets_426(nursery: trio.Nursery) -> None:
    port, _ = await start(nursery)
    status, headers, _ = await exchange(port, get("/chat/lobby"))
    assert status == 426
    assert headers["upgrade"] == "websocket"


async def test_post_on_websocket_route_gets_405(nursery: trio.Nursery) -> None:
    port, _ = await start(nursery)
    status, headers, _ = await exchange(
        port, b"POST /chat/lobby HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
    )
    assert status == 405 and headers["allow"] == "GET"


async def test_unknown_path_gets_404(nursery: trio.Nursery) -> None:
    port, _ = await start(nursery)
    assert (await exchange(port, get("/nowhere")))[0] == 404


async def test_badly_encoded_path_gets_400(nursery: trio.Nursery) -> None:
    port, _ = await start(nursery)
    assert (await exchange(port, get("/chat/%zz")))[0] == 400


async def test_http_route_is_answered_by_its_handler(nursery: trio.Nursery) -> None:
    port, _ = await start(nursery)
    status, headers, body = await exchange(port, get("/healthz"))
    assert (status, body) == (200, b"ok\n")
    assert headers["connection"] == "close"
    assert (await exchange(port, get("/hello/bob")))[2] == b"hello bob\n"


async def test_head_request_gets_headers_without_body(nursery: trio.Nursery) -> None:
    port, _ = await start(nursery)
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while chunk := await stream.receive_some():
            received += chunk
    assert received.startswith(b"HTTP/1.1 200 ")
    assert received.endswith(b"\r\n\r\n")


async def test_crashing_http_handler_gets_500_and_is_logged(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    port, _ = await start(nursery)
    assert (await exchange(port, get("/crash")))[0] == 500
    assert "handler bug" in caplog.text


async def test_bad_websocket_version_gets_426_naming_13(nursery: trio.Nursery) -> None:
    port, _ = await start(nursery)
    status, headers, _ = await exchange(port, upgrade(extra="Sec-WebSocket-Version: 8\r\n"))
    assert status == 426 and headers["sec-websocket-version"] == "13"


async def test_missing_key_gets_400(nursery: trio.Nursery) -> None:
    port, _ = await start(nursery)
    head = get(
        "/chat/lobby", "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    )
    assert (await exchange(port, head))[0] == 400


async def test_refused_origin_gets_403(nursery: trio.Nursery) -> None:
    port, _ = await start(nursery, allowed_origins={"https://app.example"})
    extra = "Sec-WebSocket-Version: 13\r\nOrigin: https://evil.example\r\n"
    assert (await exchange(port, upgrade(extra=extra)))[0] == 403


async def test_oversized_head_gets_431(nursery: trio.Nursery) -> None:
    port, _ = await start(nursery, max_head_bytes=1024)
    status, _, _ = await exchange(port, get("/healthz", "X-Big: " + "a" * 8000))
    assert status == 431


def _tiny_headers_head() -> bytes:
    """A valid upgrade whose head carries 2,700 tiny header fields in 13.6 KB (issue 13)."""
    head = upgrade(extra="Sec-WebSocket-Version: 13\r\n" + "a:b\r\n" * 2_700)
    assert len(head) < DEFAULT_MAX_HEAD_BYTES  # the byte limit alone lets it through
    return head


async def test_a_head_of_thousands_of_tiny_headers_gets_431_within_the_byte_limit(
    nursery: trio.Nursery,
) -> None:
    port, _ = await start(nursery)  # the default 16 KiB byte limit and 100 header fields
    status, _, _ = await exchange(port, _tiny_headers_head())
    assert status == 431


async def test_the_same_head_is_upgraded_under_a_higher_header_count(
    nursery: trio.Nursery,
) -> None:
    echo = Echo()
    port, _ = await start(nursery, echo, max_headers=10_000)  # what the 431 above depends on
    async with tcp_client(port) as stream:
        await stream.send_all(_tiny_headers_head())
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += await stream.receive_some()
    assert answer.startswith(b"HTTP/1.1 101")
    [(request, _)] = echo.calls
    assert len(request.headers) > 2_700


@pytest.mark.parametrize(
    "first_field",
    ["X-Plain: a", "X-Accented: café"],  # a byte outside ASCII sends the head to h11
    ids=["fast path", "h11"],
)
async def test_the_header_field_limit_is_the_same_on_both_parsers(
    nursery: trio.Nursery, first_field: str
) -> None:
    port, _ = await start(nursery)  # the default limit: 100 fields
    for fields, status in ((100, 200), (101, 431)):
        others = [f"X-{number}: a" for number in range(fields - 2)]  # get() adds Host
        assert (await exchange(port, get("/healthz", first_field, *others)))[0] == status


async def test_garbage_gets_400(nursery: trio.Nursery) -> None:
    port, _ = await start(nursery)
    assert (await exchange(port, b"\x16\x03\x01 this is not http\r\n\r\n"))[0] == 400


async def test_silent_client_is_closed_after_handshake_timeout(
    nursery: trio.Nursery, virtual_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="corral.server")
    echo = Echo()
    port, _ = await start(nursery, echo, handshake_timeout=5.0)
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        assert await stream.receive_some() == b""
    assert echo.calls == []
    assert re.search(r"closing 127\.0\.0\.1:\d+: no request head within 5 s", caplog.text)


async def test_client_sending_half_a_head_is_closed_after_handshake_timeout(
    nursery: trio.Nursery, virtual_clock: trio.testing.MockClock
) -> None:
    port, _ = await start(nursery, handshake_timeout=5.0)
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        assert await stream.receive_some() == b""


async def test_connections_over_the_limit_get_503_then_room_frees_up(nursery: trio.Nursery) -> None:
    port, front_door = await start(nursery, max_connections=1)
    url = f"ws://127.0.0.1:{port}/chat/lobby"
    async with open_websocket_url(url) as first:
        await first.send_message("hold")
        assert await first.get_message() == "hold"
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(url):
                pass
        assert rejected.value.status_code == 503
        assert (await exchange(port, get("/healthz")))[0] == 503
        assert front_door.statistics().refused_connections == 2
    await until_idle(front_door)
    async with open_websocket_url(url) as later:
        await later.send_message("room again")
        assert await later.get_message() == "room again"


async def test_crashing_on_websocket_is_logged_and_the_server_keeps_serving(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(
        stream: trio.abc.Stream, request: Request, head_bytes: bytes, match: Match
    ) -> None:
        raise RuntimeError("connection layer bug")

    port, front_door = await start(nursery, broken)
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(upgrade())
        assert await stream.receive_some() == b""
    assert "connection layer bug" in caplog.text
    assert (await exchange(port, get("/healthz")))[0] == 200
    await until_idle(front_door)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_tls(ca: trustme.CA, tmp_path: Any) -> ssl.SSLContext:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(certfile), append=True)
    cert.private_key_pem.write_to_path(str(keyfile))
    return make_ssl_context(str(certfile), str(keyfile))


@pytest.fixture
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def test_wss_connection_is_upgraded_over_tls(
    nursery: trio.Nursery, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    echo = Echo()
    port, _ = await start(nursery, echo, ssl_context=server_tls)
    async with open_websocket_url(
        f"wss://127.0.0.1:{port}/chat/secure", ssl_context=client_tls
    ) as ws:
        await ws.send_message("over tls")
        assert await ws.get_message() == "over tls"
    [(request, _)] = echo.calls
    assert request.scheme == "wss"
    assert request.peer is not None


async def test_plaintext_client_on_tls_port_is_dropped_and_server_keeps_serving(
    nursery: trio.Nursery, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    port, _ = await start(nursery, ssl_context=server_tls)
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(get("/healthz"))
        while await stream.receive_some():
            pass
    async with open_websocket_url(f"wss://127.0.0.1:{port}/chat/x", ssl_context=client_tls) as ws:
        await ws.send_message("still up")
        assert await ws.get_message() == "still up"


async def test_http_handler_that_never_answers_is_closed_after_the_timeout(
    nursery: trio.Nursery, virtual_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async def stuck(request: Request) -> Response:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    front_door = FrontDoor(
        Router([Route("/stuck", stuck, kind="http")]), Echo(), handshake_timeout=5.0
    )
    [listener] = await nursery.start(
        partial(serve_tcp, front_door.handle, host="127.0.0.1", port=0)
    )
    async with await trio.open_tcp_stream("127.0.0.1", listener.socket.getsockname()[1]) as stream:
        await stream.send_all(get("/stuck"))
        assert await stream.receive_some() == b""
    assert "no answer within 5 s" in caplog.text


async def test_a_backlog_larger_than_one_batch_is_all_accepted_and_handed_off(
    nursery: trio.Nursery,
) -> None:
    listeners = await open_listeners("127.0.0.1", 0)
    assert isinstance(listeners[0], trio.SocketListener)
    port = listeners[0].socket.getsockname()[1]
    handed: list[trio.abc.Stream] = []
    all_in = trio.Event()
    count = 2 * ACCEPT_BATCH + 1

    def hand_off(stream: trio.abc.Stream) -> None:
        assert isinstance(stream, trio.SocketStream)
        handed.append(stream)
        if len(handed) == count:
            all_in.set()

    clients = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(count)]
    await nursery.start(accept_into, listeners, hand_off)  # the whole backlog is waiting
    with trio.fail_after(10):
        await all_in.wait()
    # Each stream handed off is the server's end of one client, and each client has one.
    ends = {
        stream.socket.getpeername() for stream in handed if isinstance(stream, trio.SocketStream)
    }
    assert ends == {client.socket.getsockname() for client in clients}
    for stream in [*handed, *clients]:
        await stream.aclose()
