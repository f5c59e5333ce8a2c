"""The ASGI rules without a socket: scopes, what each response message means in each phase,
what a failed app owes the client, and lifespan replies."""

from __future__ import annotations

import h11
import pytest

from server.front.asgi_rules import (
    Accept,
    AfterApp,
    AsgiMisuse,
    CloseSocket,
    LifespanOutcome,
    Phase,
    Refuse,
    ResponseCycle,
    SendMessage,
    SocketCycle,
    SocketPhase,
    after_app,
    after_socket_app,
    http_scope,
    lifespan_outcome,
    websocket_scope,
)
from server.front.http import Request


def _request(target: str, method: str = "GET") -> Request:
    path, _, _ = target.partition("?")
    return Request(
        method=method,
        target=target,
        path=path,
        query={},
        headers=(("host", "example.org"), ("x-thing", "caf\xe9")),
        peer=("10.0.0.1", 5000),
    )


def test_scope_keeps_raw_path_and_query_and_decodes_path() -> None:
    scope = http_scope(
        _request("/items/a%20b%2Fc?q=1&r=%20"), server=("127.0.0.1", 80), state={"db": 1}
    )
    assert scope["type"] == "http"
    assert scope["asgi"]["version"] == "3.0"
    assert scope["path"] == "/items/a b/c"
    assert scope["raw_path"] == b"/items/a%20b%2Fc"
    assert scope["query_string"] == b"q=1&r=%20"
    assert scope["headers"] == [(b"host", b"example.org"), (b"x-thing", b"caf\xe9")]
    assert scope["client"] == ("10.0.0.1", 5000)
    assert scope["server"] == ("127.0.0.1", 80)
    assert scope["state"] == {"db": 1}


def test_scope_state_is_a_copy_per_request() -> None:
    state = {"db": 1}
    scope = http_scope(_request("/"), server=None, state=state)
    scope["state"]["db"] = 2
    assert state == {"db": 1}


def _start(status: int = 200, headers: list[tuple[bytes, bytes]] | None = None) -> dict:
    return {"type": "http.response.start", "status": status, "headers": headers or []}


def test_head_is_held_until_the_first_body_and_a_single_body_gets_a_length() -> None:
    cycle = ResponseCycle()
    assert cycle.on_send(_start(headers=[(b"content-type", b"text/plain")])) == []
    assert cycle.phase is Phase.HELD
    events = cycle.on_send({"type": "http.response.body", "body": b"hello"})
    assert cycle.phase is Phase.DONE
    head, data, end = events
    assert isinstance(head, h11.Response) and head.status_code == 200
    assert (b"content-length", b"5") in head.headers
    assert data == h11.Data(data=b"hello")
    assert isinstance(end, h11.EndOfMessage)


def test_streamed_body_has_no_length_added() -> None:
    cycle = ResponseCycle()
    cycle.on_send(_start())
    head, data = cycle.on_send({"type": "http.response.body", "body": b"a", "more_body": True})
    assert isinstance(head, h11.Response)
    assert all(name != b"content-length" for name, _ in head.headers)
    assert cycle.phase is Phase.STREAMING
    assert cycle.on_send({"type": "http.response.body", "body": b"b", "more_body": True}) == [
        h11.Data(data=b"b")
    ]
    (end,) = cycle.on_send({"type": "http.response.body"})
    assert isinstance(end, h11.EndOfMessage)


def test_the_apps_own_length_is_kept() -> None:
    cycle = ResponseCycle()
    cycle.on_send(_start(headers=[(b"Content-Length", b"3")]))
    head, *_ = cycle.on_send({"type": "http.response.body", "body": b"abc"})
    assert [name for name, _ in head.headers].count(b"content-length") == 1


def test_head_request_drops_the_body() -> None:
    cycle = ResponseCycle(head_request=True)
    cycle.on_send(_start())
    head, end = cycle.on_send({"type": "http.response.body", "body": b"hello"})
    assert isinstance(head, h11.Response) and isinstance(end, h11.EndOfMessage)


def test_no_length_on_204() -> None:
    cycle = ResponseCycle()
    cycle.on_send(_start(204))
    head, _ = cycle.on_send({"type": "http.response.body"})
    assert all(name != b"content-length" for name, _ in head.headers)


@pytest.mark.parametrize(
    ("messages", "complaint"),
    [
        ([{"type": "http.response.body", "body": b"x"}], "before http.response.start"),
        ([_start(), _start()], "in phase held"),
        ([_start(), {"type": "http.response.body"}, {"type": "http.response.body"}], "after"),
        ([{"type": "websocket.accept"}], "unexpected ASGI message"),
        ([_start(status=99)], "status"),
        ([_start(headers=[("name", "str")])], "pair of bytes"),  # type: ignore[list-item]
        ([_start(), {"type": "http.response.body", "body": "text"}], "not bytes"),
    ],
)
def test_out_of_turn_messages_are_refused(messages: list[dict], complaint: str) -> None:
    cycle = ResponseCycle()
    with pytest.raises(AsgiMisuse, match=complaint):
        for message in messages:
            cycle.on_send(message)


@pytest.mark.parametrize(
    ("phase", "debt"),
    [
        (Phase.WAITING, AfterApp.ERROR_500),
        (Phase.HELD, AfterApp.ERROR_500),
        (Phase.STREAMING, AfterApp.ABORT),
        (Phase.DONE, AfterApp.NOTHING),
    ],
)
def test_what_an_app_that_ended_owes_the_client(phase: Phase, debt: AfterApp) -> None:
    assert after_app(phase) is debt


def test_lifespan_replies() -> None:
    assert lifespan_outcome({"type": "lifespan.startup.complete"}, "startup") == (
        LifespanOutcome.COMPLETE,
        "",
    )
    assert lifespan_outcome({"type": "lifespan.shutdown.failed", "message": "db"}, "shutdown") == (
        LifespanOutcome.FAILED,
        "db",
    )
    with pytest.raises(AsgiMisuse):
        lifespan_outcome({"type": "lifespan.shutdown.complete"}, "startup")


def test_websocket_scope_lists_the_offered_subprotocols() -> None:
    request = Request(
        method="GET",
        target="/ws?room=1",
        path="/ws",
        query={},
        headers=(("host", "x"), ("sec-websocket-protocol", "a, b")),
        scheme="ws",
    )
    scope = websocket_scope(request, server=None)
    assert scope["type"] == "websocket"
    assert "method" not in scope
    assert (scope["path"], scope["query_string"], scope["scheme"]) == ("/ws", b"room=1", "ws")
    assert scope["subprotocols"] == ["a", "b"]


def test_a_websocket_is_accepted_then_sends_then_closes() -> None:
    cycle = SocketCycle(offered=("a",))
    accept = cycle.on_send(
        {"type": "websocket.accept", "subprotocol": "a", "headers": [(b"x-y", b"z")]}
    )
    assert accept == Accept("a", (("x-y", "z"),))
    assert cycle.on_send({"type": "websocket.send", "text": "hi"}) == SendMessage("hi")
    assert cycle.on_send({"type": "websocket.send", "bytes": b"\x00"}) == SendMessage(b"\x00")
    assert cycle.on_send({"type": "websocket.close", "code": 4001}) == CloseSocket(4001, "")
    with pytest.raises(AsgiMisuse, match="after the WebSocket closed"):
        cycle.on_send({"type": "websocket.send", "text": "late"})


def test_a_close_before_accepting_is_a_403_refusal() -> None:
    assert SocketCycle().on_send({"type": "websocket.close"}) == Refuse(403)


@pytest.mark.parametrize(
    ("message", "complaint"),
    [
        ({"type": "websocket.send", "text": "early"}, "before websocket.accept"),
        ({"type": "websocket.accept", "subprotocol": "c"}, "was not offered"),
        ({"type": "http.response.start"}, "unexpected ASGI message"),
    ],
)
def test_websocket_messages_out_of_turn_are_refused(message: dict, complaint: str) -> None:
    with pytest.raises(AsgiMisuse, match=complaint):
        SocketCycle(offered=("a",)).on_send(message)


def test_a_send_needs_exactly_one_payload() -> None:
    cycle = SocketCycle()
    cycle.on_send({"type": "websocket.accept"})
    with pytest.raises(AsgiMisuse, match="exactly one"):
        cycle.on_send({"type": "websocket.send", "text": "a", "bytes": b"b"})


@pytest.mark.parametrize(
    ("phase", "failed", "owed"),
    [
        (SocketPhase.CONNECTING, False, Refuse(403)),
        (SocketPhase.CONNECTING, True, Refuse(500)),
        (SocketPhase.OPEN, False, CloseSocket(1000, "")),
        (SocketPhase.OPEN, True, CloseSocket(1011, "")),
        (SocketPhase.CLOSED, True, None),
    ],
)
def test_what_a_websocket_app_that_ended_owes_the_client(
    phase: SocketPhase, failed: bool, owed: object
) -> None:
    assert after_socket_app(phase, failed) == owed
