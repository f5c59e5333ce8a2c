"""Reading request heads and writing responses with h11, without sockets."""

from __future__ import annotations

import h11
import pytest
import trio
import trio.testing

from server.front.http import (
    BadRequest,
    HeadTooLarge,
    PeerClosed,
    Request,
    Response,
    close_after_response,
    error_response,
    head_line_ends,
    method_not_allowed,
    read_request_head,
    render_response,
    service_unavailable,
    unsupported_websocket_version,
    upgrade_required,
)
from server.front.router import Route, Router


class ChunkStream(trio.abc.ReceiveStream):
    """Delivers the given chunks one per receive_some, then end of stream."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        if not self.chunks:
            return b""
        chunk = self.chunks.pop(0)
        if max_bytes is not None and len(chunk) > max_bytes:
            chunk, rest = chunk[:max_bytes], chunk[max_bytes:]
            self.chunks.insert(0, rest)
        return chunk

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


UPGRADE_HEAD = (
    b"GET /chat/lobby?name=ann&tag=a&tag=b&empty= HTTP/1.1\r\n"
    b"Host: example.com\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: keep-alive, Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: chat.v2, chat.v1\r\n"
    b"Sec-WebSocket-Protocol: json\r\n"
    b"X-Dup: one\r\n"
    b"x-dup: two\r\n"
    b"\r\n"
)


async def read(*chunks: bytes, **kwargs: object) -> tuple[Request, bytes]:
    return await read_request_head(ChunkStream(*chunks), **kwargs)  # type: ignore[arg-type]


def parse_response(data: bytes, *, method: bytes = b"GET") -> tuple[h11.Response, bytes]:
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
    client.send(h11.EndOfMessage())
    client.receive_data(data)
    client.receive_data(b"")
    head = client.next_event()
    assert isinstance(head, h11.Response)
    body = b""
    while not isinstance(event := client.next_event(), h11.EndOfMessage):
        assert isinstance(event, h11.Data)
        body += event.data
    return head, body


async def test_head_is_parsed_into_request_fields() -> None:
    request, _ = await read(UPGRADE_HEAD, peer=("127.0.0.1", 5555))
    assert request.method == "GET"
    assert request.target == "/chat/lobby?name=ann&tag=a&tag=b&empty="
    assert request.path == "/chat/lobby"
    assert request.query == {"name": ("ann",), "tag": ("a", "b"), "empty": ("",)}
    assert request.http_version == "1.1"
    assert request.peer == ("127.0.0.1", 5555)
    assert ("host", "example.com") in request.headers


async def test_header_lookup_is_case_insensitive_and_joins_repeats() -> None:
    request, _ = await read(UPGRADE_HEAD)
    assert request.header("HOST") == "example.com"
    assert request.header("x-dup") == "one, two"
    assert request.header("missing") is None


async def test_header_fields_give_every_header_as_header_gives_it_from_one_scan() -> None:
    request, _ = await read(UPGRADE_HEAD)
    fields = request.header_fields()
    assert fields["x-dup"] == "one, two"
    assert fields == {name: request.header(name) for name, _ in request.headers}


async def test_query_value_gives_first_value_and_decodes_plus() -> None:
    request, _ = await read(b"GET /s?q=a+b%21&q=2 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert request.query_value("q") == "a b!"
    assert request.query_value("nope") is None


async def test_proposed_subprotocols_come_from_every_header_in_order() -> None:
    request, _ = await read(UPGRADE_HEAD)
    assert request.subprotocols == ("chat.v2", "chat.v1", "json")


async def test_upgrade_request_is_recognised_and_gets_ws_scheme() -> None:
    plain, _ = await read(UPGRADE_HEAD)
    secure, _ = await read(UPGRADE_HEAD, secure=True)
    assert plain.is_websocket_upgrade and plain.scheme == "ws"
    assert secure.scheme == "wss"


async def test_plain_request_gets_http_scheme() -> None:
    plain, _ = await read(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    secure, _ = await read(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", secure=True)
    assert not plain.is_websocket_upgrade
    assert (plain.scheme, secure.scheme) == ("http", "https")


async def test_bytes_read_after_the_head_are_returned_as_they_came() -> None:
    early_frame = b"\x81\x85\x00\x00\x00\x00hello"
    request, rest = await read(UPGRADE_HEAD + early_frame[:3], early_frame[3:])
    assert request.path == "/chat/lobby"
    assert rest == early_frame[:3]  # what came with the head; the rest is the stream's


async def test_head_dribbled_one_byte_at_a_time_is_parsed() -> None:
    request, rest = await read(*(bytes([b]) for b in UPGRADE_HEAD))
    assert request.path == "/chat/lobby"
    assert rest == b""


async def test_a_head_with_more_header_fields_than_max_headers_is_refused_with_431() -> None:
    fields = "".join(f"X-{number}: a\r\n" for number in range(101))
    with pytest.raises(HeadTooLarge, match="100 header fields"):
        await read(f"GET / HTTP/1.1\r\nHost: x\r\n{fields}\r\n".encode())


@pytest.mark.parametrize("first_field", [b"X-Plain: a", b"X-Latin: caf\xe9"], ids=["fast", "h11"])
async def test_both_parsers_take_100_fields_and_refuse_101(first_field: bytes) -> None:
    def head(fields: int) -> bytes:
        others = b"".join(b"X-%d: a\r\n" % number for number in range(fields - 2))
        return b"GET / HTTP/1.1\r\nHost: x\r\n" + first_field + b"\r\n" + others + b"\r\n"

    request, _ = await read(head(100))
    assert len(request.headers) == 100
    with pytest.raises(HeadTooLarge, match="100 header fields"):
        await read(head(101))
    with pytest.raises(HeadTooLarge, match="100 header fields"):  # dribbled: refused the same
        await read(*(bytes([byte]) for byte in head(101)))


@pytest.mark.parametrize(
    ("head", "start", "line_ends"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n\r\n", 0, 2),
        (b"GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n\r\n\x81\n\n\n", 0, 2),  # frames after it
        (b"GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n", 0, 3),  # not ended yet
        (b"GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n", 16, 2),  # only what was just read
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\n\n", 26, 0),  # the blank line split
        (b"GET / HT", 0, 0),
    ],
)
def test_head_line_ends_counts_the_new_bytes_up_to_the_blank_line(
    head: bytes, start: int, line_ends: int
) -> None:
    assert head_line_ends(head, start) == line_ends


async def test_a_head_dribbled_a_byte_at_a_time_with_too_many_fields_is_refused() -> None:
    fields = "".join(f"X-{number}: a\r\n" for number in range(101))
    head = f"GET / HTTP/1.1\r\nHost: x\r\n{fields}\r\n".encode()
    with pytest.raises(HeadTooLarge, match="100 header fields"):
        await read(*(bytes([b]) for b in head))


async def test_a_head_of_too_many_fields_is_refused_before_h11_parses_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parsed: list[bytes] = []
    monkeypatch.setattr(h11.Connection, "receive_data", lambda self, data: parsed.append(data))
    fields = "".join(f"X-{number}: a\r\n" for number in range(2_700))
    with pytest.raises(HeadTooLarge, match="100 header fields"):
        await read(f"GET / HTTP/1.1\r\nHost: x\r\n{fields}\r\n".encode())
    assert parsed == []


async def test_absolute_form_target_yields_its_path_and_query() -> None:
    request, _ = await read(b"GET http://example.com/a/b?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert (request.path, request.query) == ("/a/b", {"x": ("1",)})


async def test_http_1_0_request_is_accepted_without_host() -> None:
    request, _ = await read(b"GET /old HTTP/1.0\r\n\r\n")
    assert request.http_version == "1.0"


@pytest.mark.parametrize(
    "head",
    [
        b"NONSENSE\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",  # HTTP/1.1 needs Host
        b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /?q=%ff HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
    ],
)
async def test_malformed_head_raises_bad_request(head: bytes) -> None:
    with pytest.raises(BadRequest):
        await read(head)


async def test_oversized_head_raises_head_too_large() -> None:
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n"
    with pytest.raises(HeadTooLarge):
        await read(head, max_head_bytes=1024)


async def test_oversized_head_dribbled_in_small_chunks_raises_head_too_large() -> None:
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n"
    chunks = [head[i : i + 100] for i in range(0, len(head), 100)]
    with pytest.raises(HeadTooLarge):
        await read(*chunks, max_head_bytes=1024)


async def test_head_at_the_limit_is_accepted() -> None:
    head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    request, _ = await read(head, max_head_bytes=len(head))
    assert request.path == "/"


@pytest.mark.parametrize("chunks", [(), (b"GET / HTTP/1.1\r\nHo",)])
async def test_peer_closing_before_a_complete_head_raises_peer_closed(
    chunks: tuple[bytes, ...],
) -> None:
    with pytest.raises(PeerClosed):
        await read(*chunks)


async def test_with_match_fills_bindings_and_path_info() -> None:
    request, _ = await read(b"GET /files/7/a/b HTTP/1.1\r\nHost: x\r\n\r\n")
    match = Router([Route("/files/:id/[...]", "t", constraints={"id": "int"})]).match(request.path)
    assert match is not None
    routed = request.with_match(match)
    assert routed.bindings == {"id": 7}
    assert routed.path_info == ("a", "b")


def test_rendered_response_has_length_and_connection_close() -> None:
    head, body = parse_response(render_response(Response(200, [("X-Thing", "1")], b"hello")))
    headers = dict(head.headers)
    assert head.status_code == 200
    assert headers[b"content-length"] == b"5"
    assert headers[b"connection"] == b"close"
    assert headers[b"x-thing"] == b"1"
    assert body == b"hello"


def test_response_to_head_request_has_no_body_but_the_real_length() -> None:
    data = render_response(Response.text(200, "hello"), method="HEAD")
    head, body = parse_response(data, method=b"HEAD")
    assert dict(head.headers)[b"content-length"] == b"6"
    assert body == b""
    assert data.endswith(b"\r\n\r\n")


def test_response_to_http_1_0_request_uses_http_1_1_status_line_and_closes() -> None:
    data = render_response(Response.text(404, "Not Found"), http_version="1.0")
    assert data.startswith(b"HTTP/1.1 404 ")
    assert b"connection: close" in data.lower()


def test_header_injection_is_refused_when_rendering() -> None:
    with pytest.raises(h11.LocalProtocolError):
        render_response(Response(200, [("X-Evil", "a\r\nSet-Cookie: b")]))


def test_upgrade_required_names_websocket() -> None:
    response = upgrade_required()
    assert response.status == 426
    assert ("Upgrade", "websocket") in response.headers


def test_unsupported_websocket_version_names_version_13() -> None:
    response = unsupported_websocket_version()
    assert response.status == 426
    assert ("Sec-WebSocket-Version", "13") in response.headers


def test_method_not_allowed_lists_allowed_methods() -> None:
    assert ("Allow", "GET, HEAD") in method_not_allowed(["GET", "HEAD"]).headers


def test_service_unavailable_is_503() -> None:
    assert service_unavailable().status == 503


def test_head_errors_map_to_their_statuses() -> None:
    assert error_response(HeadTooLarge("big")).status == 431
    assert error_response(BadRequest("bad")).status == 400


async def test_close_after_response_lets_the_peer_read_the_answer_then_eof() -> None:
    server, client = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        await server.send_all(b"answer")
        nursery.start_soon(close_after_response, server)
        received = b""
        while chunk := await client.receive_some():
            received += chunk
        await client.aclose()
    assert received == b"answer"
