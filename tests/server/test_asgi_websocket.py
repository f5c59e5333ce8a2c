"""An ASGI app's WebSocket endpoints beside corral's (the ``websocket`` scope), over real
sockets: accept with a subprotocol, text and binary messages, closes both ways, a refusal,
a failing app, a drain, and Starlette's WebSocket route."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from trio_websocket import ConnectionRejected

from server import App, Frame, Text, WebSocketHandler, serving, websocket
from server.front.asgi_rules import Message, Receive, Scope, Send
from server.testing import open_client


class CorralEcho(WebSocketHandler[None]):
    def websocket_handle(self, frame: Frame, state: None) -> tuple[Frame, None]:
        assert isinstance(frame, Text)
        return Text("corral: " + frame.data), state


def _app(asgi: Any) -> App:
    return App([websocket("/corral", CorralEcho())], asgi=asgi)


class AsgiEcho:
    """Accepts with the first offered subprotocol, echoes, records how it ended."""

    def __init__(self) -> None:
        self.scopes: list[Scope] = []
        self.ended: list[Message] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            return
        self.scopes.append(scope)
        assert (await receive())["type"] == "websocket.connect"
        if scope["path"] == "/refuse":
            await send({"type": "websocket.close"})
            return
        offered = scope["subprotocols"]
        await send({"type": "websocket.accept", "subprotocol": offered[0] if offered else None})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                self.ended.append(message)
                return
            if message.get("text") == "bye":
                await send({"type": "websocket.close", "code": 4000, "reason": "bye"})
                return
            if message.get("text") == "fail":
                raise RuntimeError("fail")
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": "asgi: " + message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"][::-1]})


async def test_an_upgrade_no_route_takes_goes_to_the_apps_websocket() -> None:
    app = AsgiEcho()
    async with serving(_app(app)) as running:
        async with open_client(running.url("/ws?x=1"), subprotocols=["chat.v1"]) as client:
            assert client.ws.subprotocol == "chat.v1"
            await client.send_text("hello")
            assert (await client.receive()).data == "asgi: hello"
            await client.send_binary(b"abc")
            assert (await client.receive()).data == b"cba"
            await client.send_text("x" * 100_000)  # several reads, one message
            assert (await client.receive()).data == "asgi: " + "x" * 100_000
            await client.close(1000)
        async with open_client(running.url("/corral")) as client:  # corral's own route
            await client.send_text("hi")
            assert (await client.receive()).data == "corral: hi"
    (scope,) = app.scopes
    assert scope["type"] == "websocket"
    assert (scope["path"], scope["query_string"]) == ("/ws", b"x=1")
    assert scope["subprotocols"] == ["chat.v1"]
    assert app.ended == [{"type": "websocket.disconnect", "code": 1000}]


async def test_the_app_closes_with_its_code() -> None:
    async with serving(_app(AsgiEcho())) as running:
        async with open_client(running.url("/ws")) as client:
            await client.send_text("bye")
            assert await client.assert_closed() == (4000, "bye")


async def test_a_close_before_accepting_refuses_with_403() -> None:
    async with serving(_app(AsgiEcho())) as running:
        with pytest.raises(ConnectionRejected) as refused:
            async with open_client(running.url("/refuse")):
                pass
        assert refused.value.status_code == 403


async def test_an_app_failing_closes_its_websocket_with_1011() -> None:
    async with serving(_app(AsgiEcho())) as running:
        async with open_client(running.url("/ws")) as client:
            await client.send_text("fail")
            assert (await client.assert_closed())[0] == 1011


async def test_a_drain_closes_the_apps_websockets_with_1001() -> None:
    codes: list[tuple[int, str | None]] = []
    async with trio.open_nursery() as nursery:
        async with serving(_app(AsgiEcho())) as running:
            opened = trio.Event()

            async def hold_open() -> None:
                async with open_client(running.url("/ws")) as client:
                    await client.send_text("ping")
                    await client.receive()
                    opened.set()
                    codes.append(await client.assert_closed())

            nursery.start_soon(hold_open)
            await opened.wait()
    assert [code for code, _ in codes] == [1001]


async def test_starlette_websocket_route() -> None:
    async def shout(ws: WebSocket) -> None:
        await ws.accept()
        async for text in ws.iter_text():
            await ws.send_text(text.upper())

    starlette = Starlette(routes=[WebSocketRoute("/shout", shout)])
    async with serving(_app(starlette)) as running:
        async with open_client(running.url("/shout")) as client:
            await client.send_text("quiet")
            assert (await client.receive()).data == "QUIET"
