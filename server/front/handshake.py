"""The WebSocket opening handshake, decided from the one parse of the request head (RFC 6455 §4.2).

``handshake_problem`` says what a bad upgrade request deserves (400, 403, 405, 426);
``accept`` builds the 101 response for a good one: the accept key, the subprotocol ``init``
chose, extra headers, and permessage-deflate (RFC 7692) negotiated by websockets' own
extension factory. Both are pure: no socket, no second parser.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from collections.abc import Collection, Iterable

import attrs

from ..engine.inflate import InflateSettings
from ..engine.websockets_api import (
    Extension,
    InvalidHandshake,
    NegotiationError,
    ServerPerMessageDeflateFactory,
    build_extension,
    parse_extension,
)
from .http import (
    Request,
    Response,
    bad_request,
    forbidden,
    method_not_allowed,
    unsupported_websocket_version,
)

logger = logging.getLogger("corral.server")

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# websockets' own server defaults (``enable_server_permessage_deflate``): 4 KiB windows and
# memLevel 5 keep a compressed connection's zlib state near 64 KB instead of ~300 KB.
_DEFLATE = ServerPerMessageDeflateFactory(
    server_max_window_bits=12, client_max_window_bits=12, compress_settings={"memLevel": 5}
)


@attrs.frozen
class Accepted:
    """The 101 response to write, and the extensions the connection now runs with."""

    response: bytes
    extensions: tuple[Extension, ...] = ()
    """What compresses the server's frames (permessage-deflate, if negotiated)."""
    inflate: InflateSettings | None = None
    """How to inflate the client's compressed messages (None: compression not negotiated)."""


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


def accept(
    request: Request,
    *,
    subprotocol: str | None = None,
    extra_headers: Iterable[tuple[str, str]] = (),
    compression: bool = False,
) -> Accepted:
    """The 101 Switching Protocols answer to ``request`` (which ``handshake_problem`` passed).

    ``subprotocol`` must be one the client offered (ValueError otherwise); ``compression``
    accepts a permessage-deflate offer if the client made one the factory can take.
    """
    if subprotocol is not None and subprotocol not in request.subprotocols:
        raise ValueError(
            f"subprotocol {subprotocol!r} was not proposed (client offered {request.subprotocols})"
        )
    key = (request.header("sec-websocket-key") or "").strip().encode("ascii")
    headers = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", accept_key(key)),
    ]
    if subprotocol is not None:
        headers.append(("Sec-WebSocket-Protocol", subprotocol))
    extensions: tuple[Extension, ...] = ()
    inflate = None
    if compression:
        negotiated = _negotiate_deflate(request.header("sec-websocket-extensions"))
        if negotiated is not None:
            header, extension, inflate = negotiated
            headers.append(("Sec-WebSocket-Extensions", header))
            extensions = (extension,)
    headers.extend(extra_headers)
    lines = [b"HTTP/1.1 101 Switching Protocols"]
    lines += [f"{name}: {value}".encode("latin-1") for name, value in headers]
    return Accepted(b"\r\n".join(lines) + b"\r\n\r\n", extensions, inflate)


def accept_key(key: bytes) -> str:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key`` (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest()).decode("ascii")


def _negotiate_deflate(offers: str | None) -> tuple[str, Extension, InflateSettings] | None:
    """The response header, the extension (which compresses what we send) and the settings
    to inflate what the client sends, for the first permessage-deflate offer we can take."""
    if not offers:
        return None
    try:
        parsed = parse_extension(offers)
    except InvalidHandshake as exc:
        logger.info("unparseable Sec-WebSocket-Extensions (%s): no compression", exc)
        return None
    for name, params in parsed:
        if name != _DEFLATE.name:
            continue
        try:
            response_params, extension = _DEFLATE.process_request_params(params, [])
        except NegotiationError:
            continue
        header = build_extension([(name, response_params)])
        return header, extension, InflateSettings.from_response(response_params)
    return None


def _header_problem(request: Request) -> Response | None:
    """Check the upgrade headers RFC 6455 §4.2.1 requires, a bit strictly."""
    fields = request.header_fields()
    if fields.get("upgrade", "").lower() != "websocket":
        return bad_request("'Upgrade: websocket' must be the only upgrade asked for")
    if "upgrade" not in _tokens(fields.get("connection")):
        return bad_request("missing 'Connection: Upgrade'")
    version = fields.get("sec-websocket-version")
    if version is None:
        return bad_request("missing Sec-WebSocket-Version")
    if version.strip() != "13":
        return unsupported_websocket_version()
    if not _valid_key(fields.get("sec-websocket-key")):
        return bad_request("missing or malformed Sec-WebSocket-Key")
    if not _valid_host(fields.get("host")):
        return bad_request("missing or malformed Host")
    for name in ("sec-websocket-protocol", "sec-websocket-extensions"):
        if not fields.get(name, "").isascii():
            return bad_request(f"{name} is not ASCII")
    if (fields.get("content-length") or "0").strip() != "0" or fields.get("transfer-encoding"):
        return bad_request("a WebSocket handshake has no body")
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
    """A Host header is present, ASCII, and decodes as IDNA."""
    if not host or not host.isascii():
        return False
    try:
        host.encode("ascii").decode("idna")
    except UnicodeError:
        return False
    return True
