"""Who may reach the operator's endpoints (the dashboard, ``/metrics``), from the request head.

Decisions apart from I/O, shared by both endpoints:

- **Host.** A page on ``evil.example`` whose name an attacker re-points at this machine (DNS
  rebinding) reaches the server as same-origin, with ``Host: evil.example``. Only an IP
  address, ``localhost`` (and ``*.localhost``) or a configured name is accepted: rebinding needs
  a name the attacker owns, so an IP literal is never one.
- **Tokens.** ``Authorization: Bearer <token>``, compared in constant time.
- **Loopback.** A loopback peer with no forwarding header (``Forwarded``, ``X-Forwarded-For``,
  ``X-Real-IP``) is a local user, or a reverse proxy that adds none (nginx's default).
- **Logs**: ``redacted_target`` keeps secrets in a query string out of the access log.
- **The start-up warning**: an endpoint that would answer anyone says so when the server
  listens beyond loopback (``exposure_warnings``).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Collection, Iterable
from typing import Protocol, runtime_checkable
from urllib.parse import unquote_plus

from .http import Request
from .router import Route

PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")
SECRET_QUERY_NAMES = frozenset({"token", "access_token", "api_key", "password", "secret"})
"""Query parameters whose values never reach a log line (``redacted_target``)."""
LOCAL_NAMES = ("localhost",)
"""Host names always accepted besides IP addresses (and any ``*.localhost``)."""


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a peer's IP address, as the socket gives it) is a loopback address."""
    address = _ip_address(host)
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def is_loopback_bind(host: str | None) -> bool:
    """Whether a server listening on ``host`` (``--host``) is reachable from loopback only."""
    if host is None or host == "":
        return False  # every interface
    return host.lower() in LOCAL_NAMES or is_loopback_host(host.strip("[]"))


def is_local(request: Request) -> bool:
    """Whether the request comes straight from this machine (loopback peer, no proxy header)."""
    if request.peer is None or not is_loopback_host(request.peer[0]):
        return False
    return not any(request.header(name) is not None for name in PROXY_HEADERS)


def split_authority(authority: str) -> tuple[str, int | None]:
    """``host[:port]`` (IPv6 in brackets) as a lower-case host and the port, if any."""
    authority = authority.strip().lower()
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        single = authority.count(":") == 1  # else a bare IPv6 address, or no port
        host, _, port = authority.partition(":") if single else (authority, "", "")
    return host, int(port) if port.isdigit() else None


def host_allowed(request: Request, names: Collection[str] = ()) -> bool:
    """Whether the request's ``Host`` is an IP address, localhost, or one of ``names`` (lower
    case); a request without one (HTTP/1.0: no browser) passes."""
    authority = request.header("host")
    if authority is None:
        return True
    host, _ = split_authority(authority)
    return (
        _ip_address(host) is not None
        or host in LOCAL_NAMES
        or host.endswith(".localhost")
        or host in names
    )


def bearer_token(request: Request) -> str | None:
    """The credentials of an ``Authorization: Bearer`` header, if any."""
    authorization = request.header("authorization")
    if authorization is None:
        return None
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


def same_secret(presented: str | None, expected: str | None) -> bool:
    """Whether a secret is configured and ``presented`` equals it (constant time)."""
    if not expected or presented is None:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


def redacted_target(target: str) -> str:
    """A request target fit for a log line: the values of ``SECRET_QUERY_NAMES`` parameters
    replaced by ``redacted`` (``/corral/?token=s3cret`` -> ``/corral/?token=redacted``)."""
    path, question, query = target.partition("?")
    if not question:
        return target
    pairs = []
    for pair in query.split("&"):
        name, equals, _ = pair.partition("=")
        secret = unquote_plus(name).lower() in SECRET_QUERY_NAMES
        pairs.append(f"{name}=redacted" if secret and equals else pair)
    return f"{path}?{'&'.join(pairs)}"


@runtime_checkable
class Exposed(Protocol):
    """An HTTP handler that can say it would answer anyone (``exposure_warnings``)."""

    def exposure_warning(self, path: str) -> str | None:
        """Why serving ``path`` beyond loopback is unprotected; None when it is protected."""
        ...


def exposure_warnings(routes: Iterable[Route], host: str | None) -> list[str]:
    """The warnings a server listening on ``host`` logs at start-up about its routes."""
    if is_loopback_bind(host):
        return []
    warnings = []
    for route in routes:
        if route.kind == "http" and isinstance(route.target, Exposed):
            warning = route.target.exposure_warning(route.pattern)
            if warning is not None:
                warnings.append(f"listening on {host or 'every interface'}: {warning}")
    return warnings


def _ip_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
