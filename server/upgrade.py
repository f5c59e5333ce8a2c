"""Turn an HTTP request head already read by corral into a trio-websocket connection.

corral reads and routes the head itself (``server.http``), then replays the same bytes to
trio-websocket through ``ReplayStream`` so that ``wrap_server_stream`` parses the handshake
again and answers it. ``handshake_problem`` checks the head first (RFC 6455 §4.2.1) so that
wsproto never refuses what corral let through: trio-websocket 0.12.2 waits forever for a
request that wsproto refused (``_get_request`` is only woken by a Request event).
Bytes a client sends after its head but before the 101 (RFC 6455 §4.1 forbids that) are
replayed too, but wsproto 1.3.2's server handshake drops them: it never hands h11's trailing
data to the frame parser.

permessage-deflate (RFC 7692), found by reading trio-websocket 0.12.2 and wsproto 1.3.2:
wsproto implements it (``wsproto.extensions.PerMessageDeflate``) and negotiates it when the
server's ``AcceptConnection`` event carries ``extensions=[PerMessageDeflate()]``
(``H11Handshake._accept`` answers the client's offer via ``server_extensions_handshake`` and
installs the extension in the frame protocol). trio-websocket never passes extensions: its
``WebSocketRequest.accept`` calls ``WebSocketConnection._accept``, which sends
``AcceptConnection(subprotocol=..., extra_headers=...)`` only. ``_accept_with_deflate`` below
mirrors that private method with the extension added, touching ``WebSocketRequest._connection``
and ``WebSocketConnection._subprotocol``, ``._path``, ``._send`` and ``._open_handshake``;
tests/server/test_upgrade.py pins the version and the mirrored method's body, so a new
trio-websocket fails there first. Everything after the handshake (framing,
compression, trio-websocket's ``max_message_size`` on decompressed sizes) is wsproto's and
trio-websocket's normal path. Note that wsproto inflates each received chunk (4 KiB by default)
without a cap, so one chunk may grow to about 4 MiB before ``max_message_size`` is checked.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Collection, Iterable, Sequence

import trio
import trio_websocket
import wsproto.events
from wsproto import ConnectionType, WSConnection
from wsproto.extensions import PerMessageDeflate
from wsproto.utilities import RemoteProtocolError

from . import wire
from .http import (
    Request,
    Response,
    bad_request,
    close_after_response,
    forbidden,
    method_not_allowed,
    send_response,
    unsupported_websocket_version,
)

logger = logging.getLogger("corral.server")

DEFAULT_MAX_MESSAGE_SIZE = 2**20
"""trio-websocket's default: a larger message closes the connection with 1009."""

DEFAULT_MESSAGE_QUEUE_SIZE = 1
"""trio-websocket's default number of received messages buffered before reading pauses."""


class HandshakeRejected(Exception):
    """wsproto refuses this handshake; answer 400 (``refuse(stream, bad_request(...))``)."""


class ReplayStream(trio.abc.Stream):
    """The client's stream as trio-websocket reads it: first ``prefix`` (bytes already read),
    then ``inner``; it notes when bytes last arrived (``last_received``, for the idle timeout).

    trio-websocket only knows endpoints of socket streams, so a connection over this one has
    ``local``/``remote`` as a repr string: use ``Request.peer`` for the client's address.
    """

    __slots__ = ("inner", "last_received", "_prefix", "_closed")

    def __init__(self, inner: trio.abc.Stream, prefix: bytes) -> None:
        self.inner = inner
        self.last_received = trio.current_time()
        self._prefix = prefix
        self._closed = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        """Replay the prefix (at most ``max_bytes`` at a time), then defer to the inner stream."""
        if not self._prefix:
            data = await self.inner.receive_some(max_bytes)
            if data:
                self.last_received = trio.current_time()
            return data
        await trio.lowlevel.checkpoint()
        if self._closed:
            raise trio.ClosedResourceError("stream was closed")
        size = len(self._prefix) if max_bytes is None else max_bytes
        chunk, self._prefix = self._prefix[:size], self._prefix[size:]
        return chunk

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        self._closed = True
        self._prefix = b""
        await self.inner.aclose()


def client_stream(connection: trio_websocket.WebSocketConnection) -> ReplayStream:
    """The stream under a connection made by ``accept_websocket``."""
    stream = connection._stream
    assert isinstance(stream, ReplayStream)
    return stream


def handshake_problem(
    request: Request, *, allowed_origins: Collection[str] | None = None
) -> Response | None:
    """The refusal a WebSocket upgrade request deserves, or None when it may be accepted.

    ``allowed_origins`` (``scheme://host[:port]``, any case) refuses other browser origins with
    403; None allows every origin, and requests without ``Origin`` (non-browsers) always pass.
    """
    if request.method != "GET":
        return method_not_allowed(["GET"])
    if request.http_version != "1.1":
        return bad_request("WebSocket needs HTTP/1.1")
    return _header_problem(request) or _origin_problem(request, allowed_origins)


def _header_problem(request: Request) -> Response | None:
    """Check the upgrade headers the way wsproto will, and a bit stricter (RFC 6455 §4.2.1)."""
    if (request.header("upgrade") or "").lower() != "websocket":
        return bad_request("'Upgrade: websocket' must be the only upgrade asked for")
    if "upgrade" not in _tokens(request.header("connection")):
        return bad_request("missing 'Connection: Upgrade'")
    version = request.header("sec-websocket-version")
    if version is None:
        return bad_request("missing Sec-WebSocket-Version")
    if version.strip() != "13":
        return unsupported_websocket_version()
    if not _valid_key(request.header("sec-websocket-key")):
        return bad_request("missing or malformed Sec-WebSocket-Key")
    if not _valid_host(request.header("host")):
        return bad_request("missing or malformed Host")
    for name in ("sec-websocket-protocol", "sec-websocket-extensions"):
        if not (request.header(name) or "").isascii():
            return bad_request(f"{name} is not ASCII")
    return None


def _origin_problem(request: Request, allowed_origins: Collection[str] | None) -> Response | None:
    origin = request.header("origin")
    if allowed_origins is None or origin is None:
        return None
    if origin.lower() in {allowed.lower() for allowed in allowed_origins}:
        return None
    return forbidden(f"origin {origin!r} is not allowed")


def _tokens(value: str | None) -> tuple[str, ...]:
    return tuple(token.strip().lower() for token in (value or "").split(",") if token.strip())


def _valid_key(key: str | None) -> bool:
    """A Sec-WebSocket-Key is the base64 of 16 bytes (RFC 6455 §4.1, item 7)."""
    if key is None:
        return False
    try:
        return len(base64.b64decode(key.strip(), validate=True)) == 16
    except binascii.Error:
        return False


def _valid_host(host: str | None) -> bool:
    """wsproto decodes Host as IDNA and would crash trio-websocket's reader on a bad one."""
    if not host or not host.isascii():
        return False
    try:
        host.encode("ascii").decode("idna")
    except UnicodeError:
        return False
    return True


async def accept_websocket(
    nursery: trio.Nursery,
    stream: trio.abc.Stream,
    head_bytes: bytes,
    *,
    subprotocol: str | None = None,
    extra_headers: Iterable[tuple[str, str]] = (),
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    message_queue_size: int = DEFAULT_MESSAGE_QUEUE_SIZE,
    compression: bool = False,
    sink: wire.MessageSink | None = None,
) -> wire.CorralWebSocket:
    """Answer 101 to the handshake in ``head_bytes`` and return the open connection.

    trio-websocket's reader task runs in ``nursery``, which must outlive the connection.
    ``compression`` accepts a permessage-deflate offer if the client made one. Raises
    HandshakeRejected (wsproto refuses the head), ValueError (``subprotocol`` not proposed)
    or trio_websocket.ConnectionClosed (the peer is gone).
    """
    offer = _probe_handshake(head_bytes)
    if subprotocol is not None and subprotocol not in offer.subprotocols:
        raise ValueError(
            f"subprotocol {subprotocol!r} was not proposed (client offered {offer.subprotocols})"
        )
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in extra_headers]
    use_deflate = compression and _deflate_offers_parse(offer.extensions)
    connection = wire.wrap_server_stream(
        nursery,
        ReplayStream(stream, head_bytes),
        message_queue_size=message_queue_size,
        max_message_size=max_message_size,
        sink=sink,
    )
    request = await wire.get_request(connection)
    if use_deflate:
        await _accept_with_deflate(request, subprotocol, headers)
    else:
        await request.accept(subprotocol=subprotocol, extra_headers=headers)
    return connection


def _probe_handshake(head_bytes: bytes) -> wsproto.events.Request:
    """Parse the head with wsproto as trio-websocket will; HandshakeRejected if it refuses."""
    probe = WSConnection(ConnectionType.SERVER)
    try:
        probe.receive_data(head_bytes)
        for event in probe.events():
            if isinstance(event, wsproto.events.Request):
                return event
    except (RemoteProtocolError, UnicodeError) as exc:
        raise HandshakeRejected(f"wsproto refuses the handshake: {exc}") from None
    raise HandshakeRejected("head_bytes hold no complete WebSocket request")


def _deflate_offers_parse(offers: Sequence[object]) -> bool:
    """True if the client offers permessage-deflate and wsproto can parse every such offer.

    wsproto's ``PerMessageDeflate.accept`` raises ValueError on a non-numeric window size,
    which would escape ``accept``; such a client simply gets no compression.
    """
    deflate_offers = [
        offer
        for offer in offers
        if isinstance(offer, str) and offer.split(";")[0].strip() == PerMessageDeflate.name
    ]
    try:
        for offer in deflate_offers:
            PerMessageDeflate().accept(offer)
    except ValueError:
        logger.info("unparseable permessage-deflate offer; accepting without compression")
        return False
    return bool(deflate_offers)


async def _accept_with_deflate(
    request: trio_websocket.WebSocketRequest,
    subprotocol: str | None,
    extra_headers: list[tuple[bytes, bytes]],
) -> trio_websocket.WebSocketConnection:
    """``WebSocketConnection._accept`` of trio-websocket 0.12.2, plus permessage-deflate."""
    connection = request._connection
    connection._subprotocol = subprotocol
    connection._path = request.path
    event = wsproto.events.AcceptConnection(
        subprotocol=subprotocol,
        extensions=[PerMessageDeflate()],
        extra_headers=extra_headers,
    )
    await connection._send(event)
    connection._open_handshake.set()
    return connection


async def refuse(stream: trio.abc.Stream, response: Response) -> None:
    """Answer a handshake with ``response`` instead of upgrading, then close the stream."""
    try:
        await send_response(stream, response)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        logger.debug("peer went away before hearing %d", response.status)
    finally:
        await close_after_response(stream)
