"""The opening handshake: the pure decisions (refusals, the 101), then over real sockets.

Includes the bad input the engine must get right: bytes sent with the request head are the
WebSocket stream's first bytes, and a frame announcing more than max_message_size is refused
at its header.
"""

from __future__ import annotations

from typing import Any

import pytest
import wsproto.events as ev
from wsproto.extensions import PerMessageDeflate

from examples.echo import Echo
from server import App, ConnectionOptions, Request, Response, Upgrade, websocket
from server.front.handshake import accept, accept_key, handshake_problem

from .kit import client, expect_close, frame, raw_client, rejection, running_clean

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


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


def test_upgrade_with_a_body_gets_400() -> None:
    response = handshake_problem(upgrade_request(headers={"content-length": "5"}))
    assert response is not None and response.status == 400


# --- accept: the 101 ---------------------------------------------------------------------------


def test_accept_key_is_rfc_6455s_example() -> None:
    assert accept_key(KEY.encode()) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_accept_answers_101_with_the_key_subprotocol_and_extra_headers() -> None:
    request = upgrade_request(headers={"sec-websocket-protocol": "chat.v2, chat.v1"})
    accepted = accept(request, subprotocol="chat.v1", extra_headers=[("Set-Cookie", "a=b")])
    head = accepted.response.decode("latin-1")
    assert head.startswith("HTTP/1.1 101 Switching Protocols\r\n")
    assert head.endswith("\r\n\r\n")
    assert "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in head
    assert "Sec-WebSocket-Protocol: chat.v1\r\n" in head
    assert "Set-Cookie: a=b\r\n" in head
    assert accepted.extensions == ()


def test_accept_refuses_a_subprotocol_the_client_did_not_offer() -> None:
    request = upgrade_request(headers={"sec-websocket-protocol": "a"})
    with pytest.raises(ValueError, match="never-offered"):
        accept(request, subprotocol="never-offered")


def test_accept_negotiates_permessage_deflate_only_when_asked_and_offered() -> None:
    offer = {"sec-websocket-extensions": "permessage-deflate; client_max_window_bits"}
    accepted = accept(upgrade_request(headers=offer), compression=True)
    assert len(accepted.extensions) == 1
    assert b"Sec-WebSocket-Extensions: permessage-deflate" in accepted.response
    assert accept(upgrade_request(headers=offer)).extensions == ()
    assert accept(upgrade_request(), compression=True).extensions == ()


@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate; client_max_window_bits=lots",
        "permessage-deflate; server_max_window_bits=7",
        "per message deflate",
    ],
)
def test_an_offer_that_cannot_be_taken_gets_no_compression(offer: str) -> None:
    request = upgrade_request(headers={"sec-websocket-extensions": offer})
    accepted = accept(request, compression=True)
    assert accepted.extensions == ()
    assert b"Sec-WebSocket-Extensions" not in accepted.response


# --- over real sockets ---------------------------------------------------------------------


def echo_app(**options: Any) -> App:
    return App([websocket("/", Echo(), options=ConnectionOptions(**options))])


class Refusing(Echo):
    def init(self, request: Request) -> Response:
        return Response.text(400, "no thanks")


class ChoosesChat(Echo):
    def init(self, request: Request) -> Upgrade:
        return Upgrade(subprotocol="chat.v1", headers=(("X-Corral", "yes"),))


async def test_accepted_connection_echoes_messages() -> None:
    async with running_clean(echo_app()) as served, client(served.url()) as ws:
        await ws.send_message("hello")
        assert await ws.get_message() == "hello"
        await ws.send_message(b"\x00bytes")
        assert await ws.get_message() == b"\x00bytes"


async def test_chosen_subprotocol_and_extra_headers_reach_the_client() -> None:
    app = App([websocket("/", ChoosesChat())])
    async with running_clean(app) as served:
        async with client(served.url(), subprotocols=["chat.v2", "chat.v1"]) as ws:
            assert ws.subprotocol == "chat.v1"
            assert (b"x-corral", b"yes") in ws.handshake_headers


async def test_refused_handshake_reaches_the_client_as_its_status() -> None:
    async with running_clean(App([websocket("/", Refusing())])) as served:
        refused = await rejection(served.url())
    assert refused.status_code == 400
    assert refused.body is not None and b"no thanks" in refused.body


async def test_message_over_max_message_size_closes_with_1009() -> None:
    async with running_clean(echo_app(max_message_size=100)) as served:
        async with client(served.url()) as ws:
            await ws.send_message("x" * 101)
            assert (await expect_close(ws))[0] == 1009


async def test_a_frame_sent_in_the_same_write_as_the_head_is_the_first_message() -> None:
    async with running_clean(echo_app()) as served:
        async with raw_client(served.port, after_head=frame(0x1, b"early bird")) as client:
            assert await client.message() == "early bird"


async def test_a_frame_split_across_the_head_and_the_101_is_read_as_one_frame() -> None:
    whole = frame(0x2, b"\x00SMUGGLED\xff\x01\x02\x03")
    async with running_clean(echo_app()) as served:
        async with raw_client(served.port, after_head=whole[:6]) as client:
            await client.send_raw(whole[6:] + frame(0x1, b"next"))
            assert await client.message() == b"\x00SMUGGLED\xff\x01\x02\x03"
            assert await client.message() == "next"


async def test_a_frame_announcing_more_than_max_message_size_is_refused_at_its_header() -> None:
    header = bytes([0x82, 0x80 | 127]) + (64 * 2**20).to_bytes(8, "big") + b"\x01\x02\x03\x04"
    async with running_clean(echo_app(max_message_size=2**20)) as served:
        async with raw_client(served.port, after_head=header + b"x" * 1000) as client:
            closed = await client.next_event()  # no payload sent beyond 1000 bytes
            assert isinstance(closed, ev.CloseConnection) and closed.code == 1009


# --- permessage-deflate over the wire ------------------------------------------------------------


async def test_compression_negotiates_permessage_deflate_and_compresses_on_the_wire() -> None:
    async with running_clean(echo_app(compression=True)) as served:
        async with raw_client(served.port, extensions=[PerMessageDeflate()]) as client:
            assert client.accepted is not None
            assert [type(e) for e in client.accepted.extensions] == [PerMessageDeflate]
            before = client.received_bytes
            await client.send(ev.TextMessage(data="a" * 20_000))
            assert await client.message() == "a" * 20_000
            assert client.received_bytes - before < 1_000


async def test_offer_is_declined_when_compression_is_off() -> None:
    async with running_clean(echo_app()) as served:
        async with raw_client(served.port, extensions=[PerMessageDeflate()]) as client:
            assert client.accepted is not None and client.accepted.extensions == []
            await client.send(ev.TextMessage(data="a" * 2_000))
            assert await client.message() == "a" * 2_000
            assert client.received_bytes > 2_000
