"""Who may see the dashboard: a request from loopback, or one carrying the configured token.

A decision apart from I/O: ``may_see(request, token)`` reads only the request head. A request
that came through a proxy (it carries ``Forwarded``, ``X-Forwarded-For`` or ``X-Real-IP``) is
not taken as local even when its TCP peer is 127.0.0.1, since the proxy's client is
elsewhere. The token travels as ``Authorization: Bearer <token>`` or the ``token`` query
parameter (a browser's WebSocket cannot set headers) and is compared in constant time.
"""

from __future__ import annotations

import hmac
import ipaddress

from ..http import Request, Response

TOKEN_ENV = "CORRAL_DASHBOARD_TOKEN"
"""The environment variable ``corral serve --dashboard`` reads the token from."""
TOKEN_QUERY = "token"
PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a peer's IP address, as the socket gives it) is a loopback address."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def is_local(request: Request) -> bool:
    """Whether the request comes straight from this machine (loopback peer, no proxy)."""
    if request.peer is None or not is_loopback_host(request.peer[0]):
        return False
    return not any(request.header(name) is not None for name in PROXY_HEADERS)


def presented_token(request: Request) -> str | None:
    """The token the request carries: its bearer credentials, else its ``token`` query value."""
    authorization = request.header("authorization")
    if authorization is not None:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    return request.query_value(TOKEN_QUERY)


def has_token(request: Request, token: str | None) -> bool:
    """Whether a token is configured and the request carries it (constant-time compare)."""
    presented = presented_token(request)
    if not token or presented is None:
        return False
    return hmac.compare_digest(presented.encode(), token.encode())


def may_see(request: Request, token: str | None) -> bool:
    """The rule: loopback without a proxy in between, or the right token."""
    return is_local(request) or has_token(request, token)


def forbidden() -> Response:
    """The 403 for everyone else, saying what would be let in."""
    return Response.text(
        403,
        "the corral dashboard answers requests from loopback, or carrying its token "
        "(Authorization: Bearer <token>, or ?token=<token>)",
    )
