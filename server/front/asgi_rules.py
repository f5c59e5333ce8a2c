"""What ASGI 3.0 messages mean, state by state: pure rules for the HTTP and lifespan scopes.

No socket and no trio here. ``http_scope`` builds a request's scope; ``ResponseCycle`` turns
the app's ``http.response.*`` messages into h11 events (or refuses them with ``AsgiMisuse``);
``request_message``/``DISCONNECT`` are what ``receive()`` gives; ``after_app`` says what the
connection owes the client once the app returned or raised; ``lifespan_outcome`` reads the
lifespan scope's replies. ``server.front.asgi_http`` carries these out on a connection.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from http import HTTPStatus
from typing import Any, TypeAlias
from urllib.parse import unquote_to_bytes

import attrs
import h11

from .http import Request

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
AsgiApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]
"""An ASGI 3.0 application: ``await app(scope, receive, send)``."""

ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}
"""2.4: ``send`` on a closed connection raises an OSError (``ClientGone``)."""

DISCONNECT: Message = {"type": "http.disconnect"}
"""What ``receive()`` gives once the client is gone or the response is complete."""

_NO_BODY_STATUSES = frozenset({204, 304})
_REASONS = {status.value: status.phrase.encode("ascii") for status in HTTPStatus}


class ClientGone(OSError):
    """``send()`` after the client went away (ASGI 2.4 asks for an OSError)."""


class AsgiMisuse(Exception):
    """The app sent a message that makes no sense in the response's state (a body before
    ``http.response.start``, a second start, anything after the last body, a bad field)."""


def http_scope(
    request: Request,
    *,
    server: tuple[str, int] | None,
    state: dict[str, Any] | None = None,
    root_path: str = "",
) -> Scope:
    """The ASGI ``http`` scope of ``request`` (its query string and raw path as the client
    sent them); ``state`` is a shallow copy of what lifespan startup left there."""
    query = request.target.partition("?")[2]
    scope: Scope = {
        "type": "http",
        "asgi": ASGI_VERSION,
        "http_version": request.http_version,
        "method": request.method,
        "scheme": request.scheme,
        "path": unquote_to_bytes(request.path).decode("utf-8", "surrogateescape"),
        "raw_path": request.path.encode("ascii"),
        "query_string": query.encode("ascii"),
        "root_path": root_path,
        "headers": [
            (name.encode("latin-1"), value.encode("latin-1")) for name, value in request.headers
        ],
        "client": request.peer,
        "server": server,
    }
    if state is not None:
        scope["state"] = dict(state)
    return scope


def request_message(body: bytes, more_body: bool) -> Message:
    """An ``http.request`` message: one piece of the request body."""
    return {"type": "http.request", "body": body, "more_body": more_body}


class Phase(enum.Enum):
    """Where a response stands, as far as the app's messages go."""

    WAITING = "waiting"
    """No ``http.response.start`` yet."""
    HELD = "held"
    """Started, head not written yet (kept to go out with the first body)."""
    STREAMING = "streaming"
    """Head written, more body to come."""
    DONE = "done"
    """The last body was given."""


@attrs.define
class ResponseCycle:
    """The app's side of one response: each ``send(message)`` becomes h11 events to write.

    The head is held until the first body, so that a response given in one body goes out
    in one write, with a ``Content-Length`` when the app gave none (no chunked framing).
    ``head_request``: the bodies of a response to HEAD are dropped (h11 frames it empty).
    """

    head_request: bool = False
    phase: Phase = Phase.WAITING
    status: int = 0
    _headers: list[tuple[bytes, bytes]] = attrs.field(factory=list)

    def on_send(self, message: Message) -> list[h11.Event]:
        """The events ``message`` asks for (maybe none yet); AsgiMisuse if it is out of turn."""
        kind = message.get("type")
        if kind == "http.response.start":
            if self.phase is not Phase.WAITING:
                raise AsgiMisuse(f"http.response.start in phase {self.phase.value}")
            self.status = _status(message.get("status"))
            self._headers = _headers(message.get("headers", ()))
            self.phase = Phase.HELD
            return []
        if kind == "http.response.body":
            return self._body(message)
        raise AsgiMisuse(f"unexpected ASGI message {kind!r} on an HTTP connection")

    def _body(self, message: Message) -> list[h11.Event]:
        if self.phase is Phase.WAITING:
            raise AsgiMisuse("http.response.body before http.response.start")
        if self.phase is Phase.DONE:
            raise AsgiMisuse("http.response.body after the response was complete")
        body = message.get("body", b"")
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise AsgiMisuse(f"http.response.body's body is {type(body).__name__}, not bytes")
        more = bool(message.get("more_body", False))
        events: list[h11.Event] = []
        if self.phase is Phase.HELD:
            headers = self._headers
            if not more and not _framed(headers) and self.status not in _NO_BODY_STATUSES:
                headers = [*headers, (b"content-length", b"%d" % len(body))]
            reason = _REASONS.get(self.status, b"")
            events.append(h11.Response(status_code=self.status, headers=headers, reason=reason))
            self.phase = Phase.STREAMING
        if body and not self.head_request:
            events.append(h11.Data(data=bytes(body)))
        if not more:
            events.append(h11.EndOfMessage())
            self.phase = Phase.DONE
        return events


def _status(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 200 <= value <= 599:
        raise AsgiMisuse(f"http.response.start's status is {value!r}, not an int in 200-599")
    return value


def _headers(value: Iterable[Any]) -> list[tuple[bytes, bytes]]:
    headers = []
    for pair in value:
        name, header = pair
        if not isinstance(name, bytes) or not isinstance(header, bytes):
            raise AsgiMisuse(f"response header {pair!r} is not a pair of bytes")
        headers.append((name, header))
    return headers


def _framed(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether the app framed the body itself (Content-Length or Transfer-Encoding)."""
    return any(name.lower() in (b"content-length", b"transfer-encoding") for name, _ in headers)


class AfterApp(enum.Enum):
    """What the connection owes the client once the app's call ended."""

    NOTHING = "nothing"
    """The response is complete."""
    ERROR_500 = "error_500"
    """Nothing was written: answer 500 (the connection may live on)."""
    ABORT = "abort"
    """A head went out but the body is unfinished: close the connection, the client sees it cut."""


def after_app(phase: Phase) -> AfterApp:
    """The debt of a response left in ``phase`` (by an exception, or by returning early)."""
    if phase is Phase.DONE:
        return AfterApp.NOTHING
    if phase is Phase.STREAMING:
        return AfterApp.ABORT
    return AfterApp.ERROR_500


class LifespanOutcome(enum.Enum):
    """The app's answer to ``lifespan.startup`` or ``lifespan.shutdown``."""

    COMPLETE = "complete"
    FAILED = "failed"


def lifespan_outcome(message: Message, stage: str) -> tuple[LifespanOutcome, str]:
    """The outcome a lifespan reply reports for ``stage`` (``startup``/``shutdown``), and the
    app's failure message; AsgiMisuse for a reply to another stage or of another type."""
    kind = message.get("type")
    if kind == f"lifespan.{stage}.complete":
        return LifespanOutcome.COMPLETE, ""
    if kind == f"lifespan.{stage}.failed":
        return LifespanOutcome.FAILED, str(message.get("message", ""))
    raise AsgiMisuse(f"unexpected {kind!r} during lifespan {stage}")


def websocket_scope(
    request: Request,
    *,
    server: tuple[str, int] | None,
    state: dict[str, Any] | None = None,
    root_path: str = "",
) -> Scope:
    """The ASGI ``websocket`` scope of an upgrade request (its offered subprotocols listed)."""
    scope = http_scope(request, server=server, state=state, root_path=root_path)
    del scope["method"]
    scope["type"] = "websocket"
    scope["subprotocols"] = list(request.subprotocols)
    return scope


class SocketPhase(enum.Enum):
    """Where an ASGI WebSocket stands, as far as the app's messages go."""

    CONNECTING = "connecting"
    """Not accepted yet: ``websocket.accept`` or ``websocket.close`` (a refusal) may come."""
    OPEN = "open"
    CLOSED = "closed"
    """Refused, or closed by either side: nothing more is sent."""


@attrs.frozen
class Accept:
    """Answer the handshake with 101: this subprotocol (one the client offered) and headers."""

    subprotocol: str | None
    headers: tuple[tuple[str, str], ...]


@attrs.frozen
class Refuse:
    """Answer the handshake with ``status`` (403 for a ``websocket.close`` before accepting)."""

    status: int


@attrs.frozen
class SendMessage:
    """Send one text (str) or binary (bytes) message."""

    data: str | bytes


@attrs.frozen
class CloseSocket:
    """Send a close frame with ``code`` and ``reason``."""

    code: int
    reason: str


SocketAction: TypeAlias = Accept | Refuse | SendMessage | CloseSocket


@attrs.define
class SocketCycle:
    """The app's side of one ASGI WebSocket: each ``send(message)`` becomes one action."""

    offered: tuple[str, ...] = ()
    phase: SocketPhase = SocketPhase.CONNECTING

    def on_send(self, message: Message) -> SocketAction:
        """The action ``message`` asks for; AsgiMisuse if it is out of turn or malformed."""
        kind = message.get("type")
        if self.phase is SocketPhase.CLOSED:
            raise AsgiMisuse(f"{kind!r} after the WebSocket closed")
        if kind == "websocket.accept":
            return self._accept(message)
        if kind == "websocket.close":
            refused = self.phase is SocketPhase.CONNECTING
            self.phase = SocketPhase.CLOSED
            if refused:
                return Refuse(403)
            return CloseSocket(int(message.get("code", 1000)), str(message.get("reason") or ""))
        if kind == "websocket.send":
            if self.phase is not SocketPhase.OPEN:
                raise AsgiMisuse("websocket.send before websocket.accept")
            return SendMessage(_payload(message))
        raise AsgiMisuse(f"unexpected ASGI message {kind!r} on a WebSocket")

    def _accept(self, message: Message) -> Accept:
        if self.phase is not SocketPhase.CONNECTING:
            raise AsgiMisuse("websocket.accept twice")
        subprotocol = message.get("subprotocol")
        if subprotocol is not None and subprotocol not in self.offered:
            raise AsgiMisuse(f"subprotocol {subprotocol!r} was not offered ({self.offered})")
        headers = tuple(
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in _headers(message.get("headers", ()))
        )
        self.phase = SocketPhase.OPEN
        return Accept(subprotocol, headers)

    def closed(self) -> None:
        """The client closed (or went away): whatever the app sends now is refused."""
        self.phase = SocketPhase.CLOSED


def _payload(message: Message) -> str | bytes:
    text, data = message.get("text"), message.get("bytes")
    if isinstance(text, str) and data is None:
        return text
    if isinstance(data, (bytes, bytearray)) and text is None:
        return bytes(data)
    raise AsgiMisuse("websocket.send needs exactly one of text (str) and bytes (bytes)")


def after_socket_app(phase: SocketPhase, failed: bool) -> SocketAction | None:
    """What an ASGI WebSocket left in ``phase`` owes the client once its app ended: a refusal
    (403, or 500 if it failed) before accepting, a close (1000, or 1011) once open."""
    if phase is SocketPhase.CONNECTING:
        return Refuse(500 if failed else 403)
    if phase is SocketPhase.OPEN:
        return CloseSocket(1011, "") if failed else CloseSocket(1000, "")
    return None
