"""The fast path for simple request heads against h11: whatever it takes, h11 reads the same."""

from __future__ import annotations

import h11
import hypothesis.strategies as st
from hypothesis import given, settings

from server.front.fast_head import SimpleHead, parse_simple_head

UPGRADE = (
    b"GET /chat?room=1 HTTP/1.1\r\nHost: example.com:8080\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


def h11_reading(data: bytes) -> SimpleHead | None:
    """What h11 makes of ``data``: the same fields, or None if it refuses or wants more."""
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(data)
    try:
        event = connection.next_event()
    except h11.RemoteProtocolError:
        return None
    if not isinstance(event, h11.Request):
        return None
    rest, _ = connection.trailing_data
    return SimpleHead(event.method, event.target, tuple(event.headers), bytes(rest))


def test_a_websocket_upgrade_is_read_as_h11_reads_it_with_what_follows() -> None:
    data = UPGRADE + b"\x81\x85frame"
    head = parse_simple_head(data)
    assert head is not None and head == h11_reading(data)
    assert head.rest == b"\x81\x85frame"
    assert (b"upgrade", b"websocket") in head.headers


def test_what_is_not_strictly_simple_is_left_to_h11() -> None:
    host = b"Host: a\r\n"
    for data in (
        UPGRADE[:-2],  # incomplete
        b"GET / HTTP/1.0\r\n\r\n",  # not 1.1
        b"GET / HTTP/1.1\r\n\r\n",  # no Host
        b"GET / HTTP/1.1\r\n" + host + host + b"\r\n",  # two
        b"GET / HTTP/1.1\r\n" + host + b"Content-Length: 0\r\n\r\n",  # framing
        b"GET / HTTP/1.1\r\n" + host + b"Transfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\n" + host + b"X: a\r\n  folded\r\n\r\n",  # obsolete folding
        b"GET / HTTP/1.1\r\n" + host + b"X: caf\xc3\xa9\r\n\r\n",  # not ASCII
        b"GET / HTTP/1.1\n" + host + b"\r\n",  # a bare line feed
        b"GET  / HTTP/1.1\r\n" + host + b"\r\n",  # two spaces
        b"GET / HTTP/1.1\r\n" + host + b"Bad Name: x\r\n\r\n",
        b"\r\nGET / HTTP/1.1\r\n" + host + b"\r\n",  # a blank line first
    ):
        assert parse_simple_head(data) is None, data


_TOKEN = st.text("-!#$%&'*+.^_`|~09azAZ", min_size=1, max_size=8)
_CLEAN_VALUE = st.text(' \t!"~,;=/:azAZ09', max_size=12)
_ODD_VALUE = st.text(' \t!"~,;=/:azAZ09\x7f\x00\xe9\r\n', max_size=12)


@st.composite
def simple_heads(draw: st.DrawFn) -> bytes:
    """Heads the fast path must take: one Host, no framing field, clean bytes, CRLF."""
    fields = [("Host", draw(_CLEAN_VALUE))]
    for name, value in draw(st.lists(st.tuples(_TOKEN, _CLEAN_VALUE), max_size=6)):
        if name.lower() not in ("host", "content-length", "transfer-encoding"):
            fields.insert(draw(st.integers(0, len(fields))), (name, value))
    method = draw(st.sampled_from(["GET", "POST"]) | _TOKEN)
    target = draw(st.sampled_from(["/", "/a?b=c&b=%20", "http://x/y", "*"]))
    text = f"{method} {target} HTTP/1.1\r\n"
    text += "".join(f"{name}:{value}\r\n" for name, value in fields)
    return (text + "\r\n").encode() + draw(st.binary(max_size=4))


@st.composite
def odd_heads(draw: st.DrawFn) -> bytes:
    """A simple head with a few bytes changed, cut or repeated: what does each side make of it?"""
    data = bytearray(draw(simple_heads()))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        edit = draw(st.sampled_from(["insert", "delete", "repeat"]))
        if edit == "insert":
            data[at:at] = draw(_ODD_VALUE).encode("latin-1") or b"\n"
        elif edit == "delete":
            del data[at : at + draw(st.integers(1, 3))]
        else:
            data[at:at] = data[at : at + draw(st.integers(1, 12))]
    return bytes(data)


@settings(max_examples=300, deadline=None)
@given(simple_heads())
def test_a_simple_head_is_taken_and_read_as_h11_reads_it(data: bytes) -> None:
    head = parse_simple_head(data)
    assert head is not None
    assert head == h11_reading(data)


@settings(max_examples=1000, deadline=None)
@given(odd_heads())
def test_every_head_the_fast_path_takes_is_one_h11_reads_the_same(data: bytes) -> None:
    head = parse_simple_head(data)
    if head is not None:
        assert head == h11_reading(data)
