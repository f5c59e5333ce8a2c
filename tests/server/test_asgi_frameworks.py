"""FastAPI and Starlette apps served beside corral's routes on one port, over real sockets.

(Django's ASGI handler is not here: it runs on asyncio only, and corral runs on trio.)
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import h11
import pytest
import trio
import trio.testing
from fastapi import FastAPI
from fastapi import Request as FastApiRequest
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

import actors
from server import (
    App,
    Request,
    Response,
    Text,
    Upgrade,
    WebSocketHandler,
    broadcast,
    http_route,
    serving,
    websocket,
)
from server.testing import open_client

from .http_client import HttpClient

LOBBY = "lobby"


class Post(BaseModel):
    nick: str
    text: str


class Listener(WebSocketHandler[None]):
    """Joins the lobby: whatever is broadcast there reaches it."""

    def init(self, request: Request) -> Upgrade[None]:
        return Upgrade(None)

    def websocket_init(self, state: None) -> tuple[Text, None]:
        actors.join(LOBBY)
        return Text("joined"), state


def make_fastapi(events: list[str], gone: trio.Event) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        events.append("startup")
        yield {"greeting": "hello"}
        events.append("shutdown")

    api = FastAPI(lifespan=lifespan)

    @api.get("/items/{item_id}")
    async def item(item_id: int, q: str | None = None) -> dict[str, Any]:
        return {"item_id": item_id, "q": q}

    @api.post("/echo")
    async def echo(body: dict[str, Any]) -> dict[str, Any]:
        return {"got": body}

    @api.get("/greeting")
    async def greeting(request: FastApiRequest) -> dict[str, str]:
        return {"greeting": request.state.greeting}

    @api.post("/upload")
    async def upload(request: FastApiRequest) -> dict[str, int]:
        size = pieces = 0
        async for piece in request.stream():
            size += len(piece)
            pieces += 1
        return {"size": size, "pieces": pieces}

    @api.get("/count/{n}")
    async def count(n: int) -> StreamingResponse:
        async def numbers() -> AsyncIterator[str]:
            for i in range(n):
                yield f"{i}\n"

        return StreamingResponse(numbers(), media_type="text/plain")

    @api.get("/blocks/{n}")
    async def blocks(n: int) -> StreamingResponse:
        async def pieces() -> AsyncIterator[bytes]:
            for _ in range(n):
                yield b"b" * 65536

        return StreamingResponse(pieces())

    @api.get("/forever")
    async def forever() -> StreamingResponse:
        async def ticks() -> AsyncIterator[bytes]:
            try:
                while True:
                    yield b"tick\n" * 1000
                    await trio.sleep(0)
            finally:
                gone.set()

        return StreamingResponse(ticks())

    @api.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    @api.post("/rooms/lobby/messages", status_code=202)
    async def post_message(post: Post) -> dict[str, int]:
        delivered = broadcast(LOBBY, json.dumps({"nick": post.nick, "text": post.text}))
        return {"delivered": delivered}

    return api


@pytest.fixture
async def fastapi_server() -> AsyncIterator[tuple[int, str, list[str], trio.Event]]:
    events: list[str] = []
    gone = trio.Event()
    app = App(
        [
            http_route("/healthz", lambda request: Response.text(200, "ok")),
            websocket("/ws", Listener()),
        ],
        asgi=make_fastapi(events, gone),
    )
    async with serving(app) as running:
        yield running.port, running.url("/ws"), events, gone
    assert events == ["startup", "shutdown"]


async def test_fastapi_routes_path_and_query_parameters(fastapi_server: Any) -> None:
    port, *_ = fastapi_server
    client = await HttpClient.open(port)
    reply = await client.request("GET", "/items/7?q=shoes")
    assert reply.status == 200
    assert reply.json() == {"item_id": 7, "q": "shoes"}
    invalid = await client.request("GET", "/items/seven")
    assert invalid.status == 422
    assert (await client.request("GET", "/nowhere")).status == 404
    assert (await client.request("GET", "/healthz")).body == b"ok\n"  # corral's own route
    await client.aclose()


async def test_fastapi_json_body_and_lifespan_state(fastapi_server: Any) -> None:
    port, *_ = fastapi_server
    client = await HttpClient.open(port)
    reply = await client.request(
        "POST", "/echo", body=b'{"a": [1, 2]}', headers=[("Content-Type", "application/json")]
    )
    assert reply.json() == {"got": {"a": [1, 2]}}
    assert (await client.request("GET", "/greeting")).json() == {"greeting": "hello"}
    await client.aclose()


async def test_fastapi_streaming_response(fastapi_server: Any) -> None:
    port, *_ = fastapi_server
    client = await HttpClient.open(port)
    reply = await client.request("GET", "/count/1000")
    assert reply.headers.get("transfer-encoding") == "chunked"
    assert reply.body == "".join(f"{i}\n" for i in range(1000)).encode()
    await client.aclose()


async def test_fastapi_large_upload_arrives_in_pieces(fastapi_server: Any) -> None:
    port, *_ = fastapi_server
    client = await HttpClient.open(port)
    size = 20 * 1024 * 1024
    await client.send_head("POST", "/upload", [("Content-Length", str(size))])
    piece = b"u" * (1024 * 1024)
    for _ in range(20):
        await client.send(h11.Data(data=piece))
    await client.send(h11.EndOfMessage())
    reply = await client.read_reply()
    assert reply.json()["size"] == size
    assert reply.json()["pieces"] > 20  # read as it came, not in one buffer
    await client.aclose()


async def test_fastapi_exception_is_a_500_and_the_connection_serves_on(
    fastapi_server: Any,
) -> None:
    port, *_ = fastapi_server
    client = await HttpClient.open(port)
    assert (await client.request("GET", "/boom")).status == 500
    assert (await client.request("GET", "/items/1")).status == 200
    await client.aclose()


async def test_fastapi_slow_client_reads_a_long_stream(fastapi_server: Any) -> None:
    port, *_ = fastapi_server
    client = await HttpClient.open(port)
    await client.send_head("GET", "/blocks/300", [])
    await client.send(h11.EndOfMessage())
    await trio.testing.wait_all_tasks_blocked(cushion=0.02)  # the app waits on this client
    other = await HttpClient.open(port)
    assert (await other.request("GET", "/items/2")).status == 200  # others are served
    await other.aclose()
    reply = await client.read_reply()
    assert len(reply.body) == 300 * 65536
    await client.aclose()


async def test_fastapi_stream_stops_when_the_client_hangs_up(fastapi_server: Any) -> None:
    port, _, _, gone = fastapi_server
    client = await HttpClient.open(port)
    await client.send_head("GET", "/forever", [])
    await client.send(h11.EndOfMessage())
    assert (await client.read_head()).status_code == 200
    await client.next_event()
    await client.aclose()
    await gone.wait()  # the generator was closed: the app saw the disconnect


async def test_fastapi_post_broadcasts_to_corral_websockets(fastapi_server: Any) -> None:
    port, ws_url, *_ = fastapi_server
    async with open_client(ws_url) as first, open_client(ws_url) as second:
        for listener in (first, second):
            assert (await listener.receive()).data == "joined"
        client = await HttpClient.open(port)
        reply = await client.request(
            "POST",
            "/rooms/lobby/messages",
            body=b'{"nick": "api", "text": "hi all"}',
            headers=[("Content-Type", "application/json")],
        )
        assert reply.status == 202
        assert reply.json() == {"delivered": 2}
        for listener in (first, second):
            assert await listener.receive_json() == {"nick": "api", "text": "hi all"}
        await client.aclose()


def make_starlette(events: list[str]) -> Starlette:
    async def hello(request: StarletteRequest) -> PlainTextResponse:
        return PlainTextResponse(f"hello {request.path_params['name']}")

    async def total(request: StarletteRequest) -> JSONResponse:
        numbers = await request.json()
        return JSONResponse({"total": sum(numbers)})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    return Starlette(
        routes=[Route("/hello/{name}", hello), Route("/total", total, methods=["POST"])],
        lifespan=lifespan,
    )


async def test_starlette_app_beside_corral() -> None:
    events: list[str] = []
    async with serving(App(asgi=make_starlette(events))) as running:
        assert events == ["startup"]
        client = await HttpClient.open(running.port)
        assert (await client.request("GET", "/hello/ada")).body == b"hello ada"
        reply = await client.request("POST", "/total", body=b"[1, 2, 3]")
        assert reply.json() == {"total": 6}
        await client.aclose()
    assert events == ["startup", "shutdown"]
