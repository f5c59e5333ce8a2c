"""Handing an already-read head to trio-websocket: replay, checks, accept, refuse, deflate."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing
import trio_websocket
import wsproto.events as ev
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url
from wsproto import ConnectionType, WSConnection
from wsproto.extensions import PerMessageDeflate

from server.http import Request, bad_request, read_request_head
from server.upgrade import (
    HandshakeRejected,
    ReplayStream,
    accept_websocket,
    handshake_problem,
    refuse,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
OnHead = Callable[[trio.SocketStream, Request, bytes], Awaitable[None]]


def upgrade_request(**overrides: Any) -> Request:
    headers = {
        "host": "example.com",
        "upgrade": "websocket",
        "connection": "Upgrade",
        "sec-websocket-key": KEY,
        "sec-websocket-version": "13",
    }
    headers.update(overrides.pop("headers", {}))
    fields: dict[str, Any] = {"method": "GET", "target": "/ws", "path": "/ws", "query": {}}
    fields.update(overrides)
    pairs = tuple((name, value) for name, value in headers.items() if value is not None)
    return Request(headers=pairs, **fields)


# --- ReplayStream -----------------------------------------------------------------------------


async def test_replay_stream_yields_prefix_in_bounded_chunks_then_inner_bytes() -> None:
    inner, peer = trio.testing.memory_stream_pair()
    replay = ReplayStream(inner, b"abcdef")
    await peer.send_all(b"ghi")
    assert await replay.receive_some(4) == b"abcd"
    assert await replay.receive_some() == b"ef"
    assert await replay.receive_some() == b"ghi"


async def test_replay_stream_sends_to_and_closes_the_inner_stream() -> None:
    inner, peer = trio.testing.memory_stream_pair()
    replay = ReplayStream(inner, b"unread")
    await replay.send_all(b"out")
    assert await peer.receive_some() == b"out"
    await replay.aclose()
    assert await peer.receive_some() == b""
    with pytest.raises(trio.ClosedResourceError):
        await replay.receive_some()


# --- handshake_problem ------------------------------------------------------------------------


def test_valid_upgrade_request_has_no_problem() -> None:
    assert handshake_problem(upgrade_request()) is None


def test_bad_websocket_version_gets_426_naming_version_13() -> None:
    response = handshake_problem(upgrade_request(headers={"sec-websocket-version": "8"}))
    assert response is not None and response.status == 426
    assert ("Sec-WebSocket-Version", "13") in response.headers


@pytest.mark.parametrize(
    "headers",
    [
        {"sec-websocket-key": None},
        {"sec-websocket-key": "c2hvcnQ="},  # base64, but not of 16 bytes
        {"sec-websocket-key": "not base64!"},
        {"sec-websocket-version": None},
        {"connection": "keep-alive"},
        {"upgrade": "websocket, h2c"},
        {"host": "xn--a.example"},  # invalid punycode: wsproto's IDNA decoding would crash
        {"sec-websocket-protocol": "chät"},
    ],
)
def test_malformed_handshake_gets_400(headers: dict[str, str | None]) -> None:
    response = handshake_problem(upgrade_request(headers=headers))
    assert response is not None and response.status == 400


def test_non_get_upgrade_gets_405() -> None:
    response = handshake_problem(upgrade_request(method="POST"))
    assert response is not None and response.status == 405
    assert ("Allow", "GET") in response.headers


def test_http_1_0_upgrade_gets_400() -> None:
    response = handshake_problem(upgrade_request(http_version="1.0"))
    assert response is not None and response.status == 400


def test_refused_origin_gets_403() -> None:
    request = upgrade_request(headers={"origin": "https://evil.example"})
    response = handshake_problem(request, allowed_origins={"https://app.example"})
    assert response is not None and response.status == 403


def test_allowed_origin_matches_case_insensitively() -> None:
    request = upgrade_request(headers={"origin": "https://App.Example"})
    assert handshake_problem(request, allowed_origins={"https://app.example"}) is None


def test_request_without_origin_passes_an_origin_allow_list() -> None:
    assert handshake_problem(upgrade_request(), allowed_origins={"https://app.example"}) is None


# --- accept_websocket / refuse over real sockets ----------------------------------------------


async def echo(stream: trio.SocketStream, head_bytes: bytes, **accept: Any) -> None:
    async with trio.open_nursery() as nursery:
        ws = await accept_websocket(nursery, stream, head_bytes, **accept)
        try:
            while True:
                await ws.send_message(await ws.get_message())
        except ConnectionClosed:
            pass


async def start_server(nursery: trio.Nursery, on_head: OnHead) -> int:
    """A minimal server: read the head with corral, then let the test decide; port returned."""

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            request, head_bytes = await read_request_head(stream)
            await on_head(stream, request, head_bytes)

    listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
    return int(listeners[0].socket.getsockname()[1])


def echo_server(**accept: Any) -> OnHead:
    async def on_head(stream: trio.SocketStream, request: Request, head_bytes: bytes) -> None:
        await echo(stream, head_bytes, **accept)

    return on_head


async def test_accepted_connection_echoes_messages(nursery: trio.Nursery) -> None:
    port = await start_server(nursery, echo_server())
    async with open_websocket_url(f"ws://127.0.0.1:{port}/echo") as ws:
        await ws.send_message("hello")
        assert await ws.get_message() == "hello"
        await ws.send_message(b"\x00bytes")
        assert await ws.get_message() == b"\x00bytes"


async def test_chosen_subprotocol_and_extra_headers_reach_the_client(nursery: trio.Nursery) -> None:
    port = await start_server(
        nursery, echo_server(subprotocol="chat.v1", extra_headers=[("X-Corral", "yes")])
    )
    async with open_websocket_url(
        f"ws://127.0.0.1:{port}/", subprotocols=["chat.v2", "chat.v1"]
    ) as ws:
        assert ws.subprotocol == "chat.v1"
        assert (b"x-corral", b"yes") in ws.handshake_headers


async def test_message_over_max_message_size_closes_with_1009(nursery: trio.Nursery) -> None:
    port = await start_server(nursery, echo_server(max_message_size=100))
    async with open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
        await ws.send_message("x" * 101)
        with pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
        assert closed.value.reason is not None and closed.value.reason.code == 1009


async def test_refused_handshake_reaches_the_client_as_its_status(nursery: trio.Nursery) -> None:
    async def on_head(stream: trio.SocketStream, request: Request, head_bytes: bytes) -> None:
        await refuse(stream, bad_request("no thanks"))

    port = await start_server(nursery, on_head)
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(f"ws://127.0.0.1:{port}/"):
            pass
    assert rejected.value.status_code == 400
    assert rejected.value.body is not None and b"no thanks" in rejected.value.body


async def test_unproposed_subprotocol_is_refused_before_any_task_starts(
    nursery: trio.Nursery,
) -> None:
    outcome: list[BaseException] = []

    async def on_head(stream: trio.SocketStream, request: Request, head_bytes: bytes) -> None:
        async with trio.open_nursery() as nursery:
            try:
                await accept_websocket(nursery, stream, head_bytes, subprotocol="never-offered")
            except ValueError as exc:
                outcome.append(exc)
        await refuse(stream, bad_request("subprotocol"))

    port = await start_server(nursery, on_head)
    with pytest.raises(ConnectionRejected):
        async with open_websocket_url(f"ws://127.0.0.1:{port}/", subprotocols=["a"]):
            pass
    assert len(outcome) == 1 and "never-offered" in str(outcome[0])


async def test_head_wsproto_refuses_raises_handshake_rejected() -> None:
    stream, _ = trio.testing.memory_stream_pair()
    head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"  # no upgrade headers at all
    async with trio.open_nursery() as nursery:
        with pytest.raises(HandshakeRejected):
            await accept_websocket(nursery, stream, head)  # type: ignore[arg-type]


# --- raw wsproto client, for what trio-websocket's client cannot do ---------------------------


class RawClient:
    """A wsproto client over TCP that counts the bytes it receives."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.received_bytes = 0

    async def next_event(self) -> ev.Event:
        while True:
            for event in self.ws.events():
                return event
            data = await self.stream.receive_some()
            assert data, "server closed the connection"
            self.received_bytes += len(data)
            self.ws.receive_data(data)

    async def message(self) -> str | bytes:
        parts: list[Any] = []
        while True:
            event = await self.next_event()
            assert isinstance(event, (ev.TextMessage, ev.BytesMessage)), event
            parts.append(event.data)
            if event.message_finished:
                return "".join(parts) if isinstance(event, ev.TextMessage) else b"".join(parts)


async def raw_connect(
    port: int, extensions: list[Any], *, headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[RawClient, ev.AcceptConnection]:
    client = RawClient(await trio.open_tcp_stream("127.0.0.1", port))
    request = ev.Request(
        host="127.0.0.1", target="/", extensions=extensions, extra_headers=headers or []
    )
    await client.stream.send_all(client.ws.send(request))
    accepted = await client.next_event()
    assert isinstance(accepted, ev.AcceptConnection), accepted
    return client, accepted


# --- permessage-deflate -----------------------------------------------------------------------


async def test_compression_negotiates_permessage_deflate_and_compresses_on_the_wire(
    nursery: trio.Nursery,
) -> None:
    port = await start_server(nursery, echo_server(compression=True))
    client, accepted = await raw_connect(port, [PerMessageDeflate()])
    assert [type(e) for e in accepted.extensions] == [PerMessageDeflate]
    before = client.received_bytes
    await client.stream.send_all(client.ws.send(ev.TextMessage(data="a" * 20_000)))
    assert await client.message() == "a" * 20_000
    assert client.received_bytes - before < 1_000


async def test_compression_without_a_client_offer_still_connects_uncompressed(
    nursery: trio.Nursery,
) -> None:
    port = await start_server(nursery, echo_server(compression=True))
    async with open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
        assert not any(name == b"sec-websocket-extensions" for name, _ in ws.handshake_headers)
        await ws.send_message("plain")
        assert await ws.get_message() == "plain"


async def test_offer_is_declined_when_compression_is_off(nursery: trio.Nursery) -> None:
    port = await start_server(nursery, echo_server())
    client, accepted = await raw_connect(port, [PerMessageDeflate()])
    assert accepted.extensions == []
    await client.stream.send_all(client.ws.send(ev.TextMessage(data="a" * 2_000)))
    assert await client.message() == "a" * 2_000
    assert client.received_bytes > 2_000


async def test_unparseable_deflate_offer_gets_an_uncompressed_connection(
    nursery: trio.Nursery,
) -> None:
    port = await start_server(nursery, echo_server(compression=True))
    offer = (b"Sec-WebSocket-Extensions", b"permessage-deflate; client_max_window_bits=lots")
    client, accepted = await raw_connect(port, [], headers=[offer])
    assert accepted.extensions == []
    await client.stream.send_all(client.ws.send(ev.TextMessage(data="ok")))
    assert await client.message() == "ok"


def test_pinned_trio_websocket_accept_internals_are_unchanged() -> None:
    """server/upgrade.py::_accept_with_deflate mirrors this private method: re-audit on change."""
    assert trio_websocket.__version__ == "0.12.2", (
        "re-audit server/upgrade.py::_accept_with_deflate"
    )
    source = inspect.getsource(trio_websocket.WebSocketConnection._accept)
    body = [
        line.strip()
        for line in source.splitlines()
        if line.strip() and not line.strip().startswith(("'", ":", "#"))
    ]
    assert body[-5:] == [
        "self._subprotocol = subprotocol",
        "self._path = request.target",
        "await self._send(AcceptConnection(subprotocol=self._subprotocol,",
        "extra_headers=extra_headers))",
        "self._open_handshake.set()",
    ], "trio-websocket's _accept changed: re-audit server/upgrade.py::_accept_with_deflate"
    assert "_connection" in trio_websocket.WebSocketRequest.__init__.__code__.co_names
