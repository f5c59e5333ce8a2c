"""Malformed or abusive handshakes get an HTTP answer (or a bounded wait and a close), never a
WebSocket, and the server goes on upgrading everyone else. Timers run on the ``virtual_clock``.
"""

from __future__ import annotations

import logging
import os

import pytest
import trio
import trio.testing

from examples.echo import app as echo_app
from server import App, ServerOptions

from ..server.kit import (
    WAIT,
    assert_echoes,
    client,
    get,
    http_exchange,
    receive_until_closed,
    running,
    tcp_client,
    until_quiet,
    upgrade_request,
)

HANDSHAKE_TIMEOUT = 0.5
SMALL = ServerOptions(handshake_timeout=HANDSHAKE_TIMEOUT, max_connections=2, max_head_bytes=4096)


def app() -> App:
    return App(echo_app.routes)


def server_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def test_unsupported_version_gets_426_naming_version_13(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running(app()) as server:
        answer = await http_exchange(server.port, upgrade_request(version="8"))
        assert answer.status == 426
        assert answer.headers["sec-websocket-version"] == "13"
        await assert_echoes(server.url())
    assert server_errors(caplog) == []


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(upgrade_request(version=None), id="no-version"),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n",
            id="no-key",
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n",
            id="bad-key",
        ),
    ],
)
async def test_missing_or_bad_handshake_headers_get_400(
    caplog: pytest.LogCaptureFixture, request_bytes: bytes
) -> None:
    async with running(app()) as server:
        answer = await http_exchange(server.port, request_bytes)
        assert answer.status == 400
        await assert_echoes(server.url())
    assert server_errors(caplog) == []


async def test_oversized_header_block_gets_431(caplog: pytest.LogCaptureFixture) -> None:
    padding = [f"X-Padding-{i}: {'p' * 100}" for i in range(64)]  # ~7 KiB
    async with running(app(), SMALL) as server:
        answer = await http_exchange(server.port, upgrade_request("/", *padding))
        assert answer.status == 431
        await assert_echoes(server.url())
    assert server_errors(caplog) == []


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64), id="tls-hello"),
        pytest.param(b"HELLO THERE\r\n\r\n", id="not-http"),
        pytest.param(os.urandom(2048) + b"\r\n\r\n", id="random-bytes"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n", id="bad-header"),
    ],
)
async def test_garbage_gets_400(caplog: pytest.LogCaptureFixture, garbage: bytes) -> None:
    async with running(app()) as server:
        answer = await http_exchange(server.port, garbage)
        assert answer.status == 400
        await assert_echoes(server.url())
    assert server_errors(caplog) == []


async def test_silent_client_is_closed_after_the_handshake_timeout(
    virtual_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="corral.server")
    async with running(app(), SMALL) as server, tcp_client(server.port) as silent:
        started = trio.current_time()
        await until_quiet()  # the server has taken the connection and waits for its head
        await assert_echoes(server.url())  # served while the silent one waits
        assert await receive_until_closed(silent) == b""  # closed without an answer
        assert trio.current_time() - started == pytest.approx(HANDSHAKE_TIMEOUT, abs=0.01)
        await assert_echoes(server.url())
    assert any("no request head within" in r.getMessage() for r in caplog.records)
    assert server_errors(caplog) == []


async def test_half_a_head_then_silence_is_closed_after_the_handshake_timeout(
    virtual_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(app(), SMALL) as server, tcp_client(server.port) as slow:
        started = trio.current_time()
        await slow.send_all(upgrade_request()[:40])
        assert await receive_until_closed(slow) == b""
        assert trio.current_time() - started == pytest.approx(HANDSHAKE_TIMEOUT, abs=0.01)
        await assert_echoes(server.url())
    assert server_errors(caplog) == []


async def test_connections_over_the_limit_get_503_and_the_others_stay_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running(app(), SMALL) as server:
        with trio.fail_after(WAIT):
            async with client(server.url()) as first, client(server.url()) as second:
                answer = await http_exchange(server.port, upgrade_request())
                assert answer.status == 503
                assert answer.headers["retry-after"] == "1"
                for ws in (first, second):
                    await ws.send_message("still served")
                    assert await ws.get_message() == "still served"
            assert server.server.front_door.statistics().refused_connections == 1
            while server.server.front_door.statistics().active_connections > 1:
                await trio.sleep(0.01)
            await assert_echoes(server.url())  # a slot is free again
    assert server_errors(caplog) == []


async def test_plain_http_on_the_websocket_route_gets_426(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running(app()) as server:
        answer = await http_exchange(server.port, get("/"))
        assert answer.status == 426
        assert answer.headers["upgrade"] == "websocket"
        await assert_echoes(server.url())
    assert server_errors(caplog) == []
