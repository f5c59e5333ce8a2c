"""An ASGI app beside corral's routes, over real sockets: keep-alive, bodies streamed both
ways, 100-continue, disconnects, failures, lifespan and drain (plain ASGI apps, no framework)."""

from __future__ import annotations

from typing import Any

import h11
import pytest
import trio
import trio.testing

from server import App, Response, ServerOptions, http_route, serving
from server.front.asgi_lifespan import LifespanFailed
from server.front.asgi_rules import Message, Receive, Scope, Send

from .http_client import HttpClient, Reply


async def _hello(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/boom":
        raise RuntimeError("boom")
    body = f"{scope['method']} {scope['path']} {scope['query_string'].decode()}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def _data(event: object) -> bytes:
    assert isinstance(event, h11.Data), event
    return bytes(event.data)


def _app(asgi: Any) -> App:
    return App([http_route("/corral", lambda request: Response.text(200, "corral"))], asgi=asgi)


async def test_requests_no_route_takes_go_to_the_asgi_app_on_one_kept_connection() -> None:
    async with serving(_app(_hello)) as running:
        client = await HttpClient.open(running.port)
        first = await client.request("GET", "/a?x=1")
        second = await client.request("POST", "/b", body=b"ignored")
        assert (first.status, first.body) == (200, b"GET /a x=1")
        assert (second.status, second.body) == (200, b"POST /b ")
        corral = await client.request("GET", "/corral")  # handed back to corral's route
        assert corral.body == b"corral\n"
        await client.aclose()


async def test_without_an_asgi_app_an_unrouted_path_is_still_404() -> None:
    async with serving(App([http_route("/corral", lambda r: Response.text(200, "x"))])) as running:
        client = await HttpClient.open(running.port)
        assert (await client.request("GET", "/a")).status == 404
        await client.aclose()


async def test_request_body_streams_to_the_app_before_it_is_all_sent() -> None:
    async def first_piece(scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": message["body"], "more_body": True})
        total = len(message["body"])
        while message["more_body"]:
            message = await receive()
            total += len(message["body"])
        await send({"type": "http.response.body", "body": b" total=%d" % total})

    async with serving(_app(first_piece)) as running:
        client = await HttpClient.open(running.port)
        await client.send_head("POST", "/up", [("Content-Length", str(3 + 1_000_000))])
        await client.send(h11.Data(data=b"abc"))
        head = await client.read_head()  # answered while most of the body is still to come
        assert head.status_code == 200
        first = await client.next_event()
        assert _data(first) == b"abc"
        await client.send(h11.Data(data=b"x" * 1_000_000))
        await client.send(h11.EndOfMessage())
        rest = await client.next_event()
        assert _data(rest) == b" total=1000003"
        await client.aclose()


async def test_response_body_streams_to_the_client_piece_by_piece() -> None:
    go_on = trio.Event()

    async def two_pieces(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"one", "more_body": True})
        await go_on.wait()
        await send({"type": "http.response.body", "body": b"two"})

    async with serving(_app(two_pieces)) as running:
        client = await HttpClient.open(running.port)
        await client.send_head("GET", "/", [])
        await client.send(h11.EndOfMessage())
        assert (await client.read_head()).status_code == 200
        assert _data(await client.next_event()) == b"one"
        go_on.set()
        assert _data(await client.next_event()) == b"two"
        await client.aclose()


async def test_expect_100_continue_is_answered_when_the_app_reads() -> None:
    async def echo(scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        more = True
        while more:
            message = await receive()
            body += message["body"]
            more = message["more_body"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    async with serving(_app(echo)) as running:
        client = await HttpClient.open(running.port)
        await client.send_head("POST", "/", [("Content-Length", "5"), ("Expect", "100-continue")])
        informational = await client.read_head()
        assert informational.status_code == 100
        await client.send(h11.Data(data=b"hello"))
        await client.send(h11.EndOfMessage())
        reply = await client.read_reply()
        assert (reply.status, reply.body) == (200, b"hello")
        await client.aclose()


async def test_app_sees_a_client_disconnect_mid_response() -> None:
    seen: list[Message] = []
    sent_one = trio.Event()
    finished = trio.Event()

    async def waits_for_disconnect(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()  # the (empty) body
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"tick", "more_body": True})
        sent_one.set()
        seen.append(await receive())
        with pytest.raises(OSError):
            await send({"type": "http.response.body", "body": b"tock", "more_body": True})
        finished.set()

    async with serving(_app(waits_for_disconnect)) as running:
        client = await HttpClient.open(running.port)
        await client.send_head("GET", "/", [])
        await client.send(h11.EndOfMessage())
        await sent_one.wait()
        await client.aclose()
        await finished.wait()
    assert seen == [{"type": "http.disconnect"}]


async def test_receive_after_the_response_is_a_disconnect() -> None:
    after: list[Message] = []

    async def answers_then_receives(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body"})
        await receive()  # the body
        after.append(await receive())

    async with serving(_app(answers_then_receives)) as running:
        client = await HttpClient.open(running.port)
        assert (await client.request("GET", "/")).status == 204
        await client.aclose()
    assert after == [{"type": "http.disconnect"}]


async def test_app_exception_is_a_500_and_spares_the_connection_and_its_neighbours() -> None:
    async with serving(_app(_hello)) as running:
        neighbour = await HttpClient.open(running.port)
        await neighbour.send_head("GET", "/n", [])  # mid-request while the other fails
        client = await HttpClient.open(running.port)
        failed = await client.request("GET", "/boom")
        assert failed.status == 500
        assert (await client.request("GET", "/after")).body == b"GET /after "
        await neighbour.send(h11.EndOfMessage())
        assert (await neighbour.read_reply()).body == b"GET /n "
        await client.aclose()
        await neighbour.aclose()


async def test_app_failing_mid_response_cuts_that_connection() -> None:
    async def fails_midway(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise RuntimeError("midway")

    async with serving(_app(fails_midway)) as running:
        client = await HttpClient.open(running.port)
        await client.send_head("GET", "/", [])
        await client.send(h11.EndOfMessage())
        assert (await client.read_head()).status_code == 200
        assert _data(await client.next_event()) == b"part"
        with pytest.raises(h11.RemoteProtocolError):  # closed before the chunked end
            await client.next_event()
        await client.aclose()


async def test_app_returning_without_a_response_is_a_500() -> None:
    async def silent(scope: Scope, receive: Receive, send: Send) -> None:
        return None

    async with serving(_app(silent)) as running:
        client = await HttpClient.open(running.port)
        assert (await client.request("GET", "/")).status == 500
        await client.aclose()


async def test_a_slow_client_holds_back_the_app_instead_of_memory() -> None:
    sent = 0
    chunk = b"x" * 65536
    total = 2000 * len(chunk)  # 131 MB, far more than the socket buffers hold

    async def big(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal sent
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while sent < total:
            sent += len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body"})

    async with serving(_app(big)) as running:
        client = await HttpClient.open(running.port)
        await client.send_head("GET", "/", [])
        await client.send(h11.EndOfMessage())
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
        assert sent < total // 4  # waiting on the client, not buffering the body
        reply = await client.read_reply()
        assert len(reply.body) == total
        await client.aclose()


class _LifespanApp:
    """Records its lifespan; its requests read what startup put in the state."""

    def __init__(self, fail: bool = False) -> None:
        self.events: list[str] = []
        self.fail = fail

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            assert (await receive())["type"] == "lifespan.startup"
            if self.fail:
                await send({"type": "lifespan.startup.failed", "message": "no database"})
                return
            scope["state"]["db"] = "connected"
            self.events.append("startup")
            await send({"type": "lifespan.startup.complete"})
            assert (await receive())["type"] == "lifespan.shutdown"
            self.events.append("shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return
        self.events.append("request")
        body = scope["state"]["db"].encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


async def test_lifespan_starts_before_the_first_client_and_shuts_down_at_drain() -> None:
    app = _LifespanApp()
    async with serving(_app(app)) as running:
        assert app.events == ["startup"]
        client = await HttpClient.open(running.port)
        assert (await client.request("GET", "/")).body == b"connected"
        await client.aclose()
    assert app.events == ["startup", "request", "shutdown"]


async def test_lifespan_startup_failure_stops_the_server() -> None:
    with pytest.RaisesGroup(
        pytest.RaisesExc(LifespanFailed, match="no database"), flatten_subgroups=True
    ):
        async with serving(_app(_LifespanApp(fail=True))):
            pass


async def test_an_app_without_lifespan_is_served_all_the_same() -> None:
    async def no_lifespan(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http", "no lifespan here"
        await _hello(scope, receive, send)

    async with serving(_app(no_lifespan)) as running:
        client = await HttpClient.open(running.port)
        assert (await client.request("GET", "/x")).status == 200
        await client.aclose()


async def test_drain_lets_a_request_in_flight_finish_then_closes() -> None:
    started = trio.Event()
    go_on = trio.Event()
    replies: list[Reply] = []
    closed: list[bool] = []

    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        started.set()
        await go_on.wait()
        await _hello(scope, receive, send)

    async with trio.open_nursery() as nursery:
        async with serving(_app(slow)) as running:
            client = await HttpClient.open(running.port)
            await client.send_head("GET", "/late", [])
            await client.send(h11.EndOfMessage())
            await started.wait()

            async def release_once_draining() -> None:
                await trio.testing.wait_all_tasks_blocked()  # the drain waits for the response
                go_on.set()

            async def read_the_reply() -> None:
                replies.append(await client.read_reply())
                closed.append(await client.closed_by_server())
                await client.aclose()

            nursery.start_soon(release_once_draining)
            nursery.start_soon(read_the_reply)
    assert replies[0].body == b"GET /late "
    assert closed == [True]


async def _raw_exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` as is, read until the server closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(data)
    received = bytearray()
    while chunk := await stream.receive_some(65536):
        received += chunk
    await stream.aclose()
    return bytes(received)


async def test_pipelined_requests_are_answered_in_order() -> None:
    async with serving(_app(_hello)) as running:
        answer = await _raw_exchange(
            running.port,
            b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /two HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /three HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
    bodies = [b"GET /one ", b"GET /two ", b"GET /three "]
    positions = [answer.index(body) for body in bodies]
    assert positions == sorted(positions)
    assert answer.count(b"HTTP/1.1 200 OK") == 3


async def test_http_1_0_is_answered_then_closed_and_head_has_no_body() -> None:
    async with serving(_app(_hello)) as running:
        old = await _raw_exchange(running.port, b"GET /old HTTP/1.0\r\n\r\n")
        assert old.startswith(b"HTTP/1.1 200 OK") and old.endswith(b"GET /old ")
        head = await _raw_exchange(
            running.port, b"HEAD /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
    assert head.startswith(b"HTTP/1.1 200 OK") and b"content-length: 8" in head
    assert head.endswith(b"\r\n\r\n")


async def test_a_bad_head_after_a_kept_request_is_answered_400_then_closed() -> None:
    async with serving(_app(_hello)) as running:
        answer = await _raw_exchange(
            running.port,
            b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\nGET /bad HTTP/1.1\r\nno colon\r\n\r\n",
        )
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert b"GET /ok " in answer
    assert b"HTTP/1.1 400 " in answer and answer.endswith(b"malformed request head\n")


async def test_a_response_header_h11_refuses_is_a_500() -> None:
    async def bad_header(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = [(b"x-bad", b"line\nbreak")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"never"})

    async with serving(_app(bad_header)) as running:
        client = await HttpClient.open(running.port)
        assert (await client.request("GET", "/")).status == 500
        await client.aclose()


async def test_the_servers_connection_limit_holds_for_the_asgi_app() -> None:
    limited = App(asgi=_hello, options=ServerOptions(max_connections=1))
    async with serving(limited) as running:
        kept = await HttpClient.open(running.port)
        assert (await kept.request("GET", "/first")).status == 200  # holds the one slot
        refused = await HttpClient.open(running.port)
        assert (await refused.request("GET", "/second")).status == 503
        await refused.aclose()
        await kept.aclose()
