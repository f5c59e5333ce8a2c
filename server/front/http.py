"""HTTP/1.1 front matter with h11: read one request head, write one response, then close.

corral speaks HTTP only until a connection upgrades (or gets a single answer), so there is no
keep-alive: every response carries ``Connection: close``. Parsing and rendering are h11's; this
module turns its events into a small immutable ``Request`` and a ``Response`` into bytes.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, TypeAlias
from urllib.parse import parse_qsl, urlsplit

import attrs
import h11
import trio

from .eager_io import receive_eagerly
from .fast_head import parse_simple_head
from .router import Match

logger = logging.getLogger("corral.server")

DEFAULT_MAX_HEAD_BYTES = 16 * 1024
"""Largest request head accepted."""

DEFAULT_MAX_HEADERS = 100
"""Most header fields a request head may carry (Cowboy's limit; websockets takes 128)."""

_LINGER_SECONDS = 2.0
_LINGER_BYTES = 64 * 1024


class HttpError(Exception):
    """A request head that cannot be served; ``status`` is the HTTP answer it deserves."""

    status = 400


class BadRequest(HttpError):
    """The request head is not valid HTTP/1.x (answer 400)."""

    status = 400


class HeadTooLarge(HttpError):
    """The request head is larger than ``max_head_bytes``, or has more than ``max_headers``
    fields (answer 431)."""

    status = 431


class PeerClosed(Exception):
    """The peer closed the connection before sending a complete request head: nobody to answer."""


_EMPTY_MAPPING: Mapping[str, Any] = MappingProxyType({})


def _frozen_mapping(value: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only copy; the empty ones (most queries and bindings) share one object."""
    return MappingProxyType(dict(value)) if value else _EMPTY_MAPPING


def _header_pairs(value: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple(value)


@attrs.frozen
class Request:
    """One parsed request head, plus what routing learned about it.

    ``path`` is the path part of the target still percent-encoded (as Cowboy's ``path``): the
    router decodes it segment by segment so that ``%2F`` cannot split a segment.
    """

    method: str
    target: str
    path: str
    query: Mapping[str, tuple[str, ...]] = attrs.field(converter=_frozen_mapping)
    headers: tuple[tuple[str, str], ...]
    http_version: str = "1.1"
    peer: tuple[str, int] | None = None
    scheme: str = "http"
    bindings: Mapping[str, object] = attrs.field(default={}, converter=_frozen_mapping)
    path_info: tuple[str, ...] | None = None

    def header(self, name: str) -> str | None:
        """All values of header ``name`` (any case) joined with ``", "``; None when absent."""
        return joined_header(self.headers, name.lower())

    def header_fields(self) -> dict[str, str]:
        """Every header by name, a repeated one's values joined with ``", "``: one scan, for
        code that looks up many (``header`` scans the head at each call)."""
        fields: dict[str, str] = {}
        for name, value in self.headers:
            fields[name] = f"{fields[name]}, {value}" if name in fields else value
        return fields

    def query_value(self, name: str) -> str | None:
        """The first value of query parameter ``name``, or None."""
        values = self.query.get(name, ())
        return values[0] if values else None

    @property
    def subprotocols(self) -> tuple[str, ...]:
        """Subprotocols the client proposes in ``Sec-WebSocket-Protocol``, in its order."""
        return header_tokens(self.header("sec-websocket-protocol"), lower=False)

    @property
    def is_websocket_upgrade(self) -> bool:
        """True when the client asks to upgrade to WebSocket (``Upgrade: websocket``)."""
        return "websocket" in header_tokens(self.header("upgrade"))

    def with_match(self, match: Match) -> Request:
        """This request with the bindings and path_info a route match produced."""
        # Built directly: attrs.evolve costs a few times as much, on every connection.
        return Request(
            self.method,
            self.target,
            self.path,
            self.query,
            self.headers,
            self.http_version,
            self.peer,
            self.scheme,
            match.bindings,
            match.path_info,
        )


@attrs.frozen
class Response:
    """A complete response: status, extra headers and a body sent in full."""

    status: int
    headers: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_header_pairs)
    body: bytes = b""

    @classmethod
    def text(cls, status: int, text: str, *, headers: Iterable[tuple[str, str]] = ()) -> Response:
        """A ``text/plain; charset=utf-8`` response with ``text`` and a newline as the body."""
        content_type = ("Content-Type", "text/plain; charset=utf-8")
        return cls(status, (content_type, *headers), (text + "\n").encode("utf-8"))


def joined_header(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    """The values of lower-case ``name`` in ``headers`` joined with ``", "``; None when absent."""
    values = [value for key, value in headers if key == name]
    return ", ".join(values) if values else None


HttpHandler: TypeAlias = Callable[[Request], Awaitable[Response] | Response]
"""An HTTP route target: takes the routed request, returns (or awaits) a Response."""


def header_tokens(value: str | None, *, lower: bool = True) -> tuple[str, ...]:
    """Split a comma-separated header value into stripped, non-empty tokens."""
    if value is None:
        return ()
    tokens = (token.strip() for token in value.split(","))
    return tuple(token.lower() if lower else token for token in tokens if token)


def not_found() -> Response:
    """404: no route matches the path."""
    return Response.text(404, "Not Found")


def bad_request(reason: str) -> Response:
    """400 with ``reason`` in the body."""
    return Response.text(400, f"Bad Request: {reason}")


def forbidden(reason: str) -> Response:
    """403 with ``reason`` in the body (for example a refused Origin)."""
    return Response.text(403, f"Forbidden: {reason}")


def method_not_allowed(allowed: Iterable[str]) -> Response:
    """405 with the ``Allow`` header listing ``allowed``."""
    return Response.text(405, "Method Not Allowed", headers=[("Allow", ", ".join(allowed))])


def upgrade_required() -> Response:
    """426 for a plain request on a WebSocket route (RFC 9110 §15.5.22 wants ``Upgrade``)."""
    return Response.text(
        426, "Upgrade Required: this is a WebSocket endpoint", headers=[("Upgrade", "websocket")]
    )


def unsupported_websocket_version() -> Response:
    """426 naming the version we speak, as RFC 6455 §4.4 asks for a bad Sec-WebSocket-Version."""
    headers = [("Sec-WebSocket-Version", "13")]
    return Response.text(
        426, "Upgrade Required: unsupported Sec-WebSocket-Version", headers=headers
    )


def head_too_large() -> Response:
    """431: the request head exceeds the configured limit."""
    return Response.text(431, "Request Header Fields Too Large")


def internal_error() -> Response:
    """500: an HTTP handler failed; details go to the log, not to the client."""
    return Response.text(500, "Internal Server Error")


def service_unavailable() -> Response:
    """503: the server is at its connection limit."""
    return Response.text(
        503, "Service Unavailable: too many connections", headers=[("Retry-After", "1")]
    )


def too_many_from_address() -> Response:
    """429: the client's address is at its own connection limit."""
    return Response.text(
        429,
        "Too Many Requests: too many connections from your address",
        headers=[("Retry-After", "1")],
    )


def error_response(error: HttpError) -> Response:
    """The answer a head-reading error deserves."""
    if isinstance(error, HeadTooLarge):
        return head_too_large()
    return bad_request(str(error))


async def read_request_head(
    stream: trio.abc.ReceiveStream,
    *,
    max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES,
    max_headers: int = DEFAULT_MAX_HEADERS,
    peer: tuple[str, int] | None = None,
    secure: bool = False,
) -> tuple[Request, bytes]:
    """Read one request head, parsed once; return it and the bytes read after it.

    Those bytes are the start of whatever follows the head: a WebSocket client's first
    frames. ``secure`` picks the scheme (``https``/``wss``). A complete, strictly simple head
    is parsed by ``fast_head``; h11 takes every other one, and a head still incomplete, as
    it arrives (so it refuses a bad or oversized one early). Raises BadRequest, HeadTooLarge
    or PeerClosed.
    """
    connection: h11.Connection | None = None  # made when the fast path cannot decide
    received = bytearray()
    line_ends = 0  # in the head so far: the request line's, then one per field
    while True:
        data = await receive_eagerly(stream, max(1, max_head_bytes + 1 - len(received)))
        if not data:
            raise PeerClosed("connection closed before a complete request head")
        start = len(received)
        received += data
        line_ends += head_line_ends(received, start)
        if line_ends > max_headers + 2:  # refused before h11 parses a field: more lines than
            # the request line, the fields allowed and the blank line (a bare LF's)
            raise _too_many_fields(max_headers)
        simple = parse_simple_head(received)
        if simple is not None:
            _check_field_count(len(simple.headers), max_headers)
            request = _to_request(
                simple.method, simple.target, simple.headers, b"1.1", peer=peer, secure=secure
            )
            return request, simple.rest
        if connection is None:
            connection = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head_bytes)
            connection.receive_data(bytes(received))
        else:
            connection.receive_data(bytes(data))
        try:
            event = connection.next_event()
        except h11.RemoteProtocolError as exc:
            if exc.error_status_hint == 431:
                raise HeadTooLarge(f"request head over {max_head_bytes} bytes") from None
            raise BadRequest(str(exc)) from None
        if isinstance(event, h11.Request):
            _check_field_count(len(event.headers), max_headers)
            rest, _ = connection.trailing_data
            request = _to_request(
                event.method,
                event.target,
                event.headers,
                event.http_version,
                peer=peer,
                secure=secure,
            )
            return request, bytes(rest)
        if event is not h11.NEED_DATA:
            raise BadRequest(f"unexpected {type(event).__name__} before a request head")


def request_of(
    event: h11.Request,
    *,
    peer: tuple[str, int] | None,
    secure: bool,
    max_headers: int = DEFAULT_MAX_HEADERS,
) -> Request:
    """A head h11 parsed on a kept-alive connection as a Request, under the same checks as
    ``read_request_head``'s (BadRequest, HeadTooLarge)."""
    _check_field_count(len(event.headers), max_headers)
    return _to_request(
        event.method, event.target, event.headers, event.http_version, peer=peer, secure=secure
    )


def head_bytes(request: Request) -> bytes:
    """``request``'s head as bytes again, for a sans-I/O parser (h11, websockets) to take up
    the connection where this module's parse left it (neither can be handed a parsed head)."""
    lines = [f"{request.method} {request.target} HTTP/{request.http_version}"]
    lines += [f"{name}: {value}" for name, value in request.headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _check_field_count(fields: int, max_headers: int) -> None:
    """The one field limit, for heads from both parsers: HeadTooLarge over ``max_headers``."""
    if fields > max_headers:
        raise _too_many_fields(max_headers)


def _too_many_fields(max_headers: int) -> HeadTooLarge:
    return HeadTooLarge(f"request head with over {max_headers} header fields")


def head_line_ends(head: bytes | bytearray, start: int) -> int:
    """The line ends in ``head[start:]`` (the bytes just read) that come before the blank line
    ending the request head; what follows the head is not looked at.

    A cheap count in C over the new bytes only, so a head of thousands of tiny fields is
    refused before h11 spends milliseconds parsing each of them, and a head dribbled a byte
    at a time is not scanned again at every byte. The blank line is looked for from a few
    bytes back, in case it was split between two reads.
    """
    end = head.find(b"\r\n\r\n", max(0, start - 3))
    return head.count(b"\n", start, end if end >= 0 else len(head))


def _to_request(
    method: bytes,
    raw_target: bytes,
    raw_headers: Iterable[tuple[bytes, bytes]],
    http_version: bytes,
    *,
    peer: tuple[str, int] | None,
    secure: bool,
) -> Request:
    """A parsed head (h11's or the fast path's) as a Request, refusing targets and queries
    that are not ASCII/UTF-8."""
    try:
        target = raw_target.decode("ascii")
    except UnicodeDecodeError:
        raise BadRequest("request target is not ASCII") from None
    path, query = _split_target(target)
    # Interned names: every connection keeps its request, and the names repeat.
    headers = tuple(
        (sys.intern(name.decode("ascii")), value.decode("latin-1")) for name, value in raw_headers
    )
    upgrade = "websocket" in header_tokens(joined_header(headers, "upgrade"))
    return Request(
        method=method.decode("ascii"),
        target=target,
        path=path,
        query=query,
        headers=headers,
        http_version=http_version.decode("ascii"),
        peer=peer,
        scheme=("wss" if secure else "ws") if upgrade else ("https" if secure else "http"),
    )


def _split_target(target: str) -> tuple[str, dict[str, tuple[str, ...]]]:
    """Path (still encoded) and multi-valued query of an origin- or absolute-form target."""
    if target.startswith("/"):
        path, _, raw_query = target.partition("?")
    else:
        parts = urlsplit(target)
        path, raw_query = parts.path or "/", parts.query
    try:
        pairs = parse_qsl(raw_query, keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"bad query string: {exc}") from None
    query: dict[str, tuple[str, ...]] = {}
    for name, value in pairs:
        query[name] = (*query.get(name, ()), value)
    return path, query


def render_response(response: Response, *, method: str = "GET", http_version: str = "1.1") -> bytes:
    """Serialise ``response`` with h11 for a request of ``method``/``http_version``.

    Adds ``Content-Length`` and ``Connection: close``; a HEAD request gets no body.
    """
    connection = _primed_connection(method, http_version)
    headers = [
        *response.headers,
        ("Content-Length", str(len(response.body))),
        ("Connection", "close"),
    ]
    data = connection.send(h11.Response(status_code=response.status, headers=headers)) or b""
    if method != "HEAD" and response.body:
        data += connection.send(h11.Data(data=response.body)) or b""
    return data + (connection.send(h11.EndOfMessage()) or b"")


def _primed_connection(method: str, http_version: str) -> h11.Connection:
    """An h11 server connection that has seen a minimal request of this method and version.

    h11 only sends a response after receiving a request (it derives framing from its method
    and version), and writing never needs the rest of the real request.
    """
    connection = h11.Connection(h11.SERVER)
    host = b"" if http_version == "1.0" else b"Host: corral\r\n"
    connection.receive_data(
        b"%s / HTTP/%s\r\n%s\r\n" % (method.encode(), http_version.encode(), host)
    )
    event = connection.next_event()
    assert isinstance(event, h11.Request), event
    return connection


async def send_response(
    stream: trio.abc.SendStream, response: Response, *, request: Request | None = None
) -> None:
    """Write ``response`` to ``stream``, framed for ``request`` (a GET over HTTP/1.1 if None)."""
    if request is None:
        data = render_response(response)
    else:
        data = render_response(response, method=request.method, http_version=request.http_version)
    await stream.send_all(data)


async def close_after_response(stream: trio.abc.Stream) -> None:
    """Close gracefully: half-close if possible, drain briefly what the peer still sends, close.

    Closing a TCP socket with unread input makes the kernel send RST, which can destroy the
    response before the client reads it; draining first lets the answer arrive.
    """
    try:
        if isinstance(stream, trio.abc.HalfCloseableStream):
            await stream.send_eof()
        with trio.move_on_after(_LINGER_SECONDS):
            drained = 0
            while drained < _LINGER_BYTES:
                chunk = await stream.receive_some(_LINGER_BYTES)
                if not chunk:
                    break
                drained += len(chunk)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        logger.debug("peer went away while closing after a response")
    finally:
        await trio.aclose_forcefully(stream)


async def refuse(stream: trio.abc.Stream, response: Response) -> None:
    """Answer a request with ``response`` (an upgrade refused, say), then close the stream."""
    try:
        await send_response(stream, response)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        logger.debug("peer went away before hearing %d", response.status)
    finally:
        await close_after_response(stream)
