"""Who may see the dashboard, decided from the request head alone (``DashboardAccess``).

The rules, in order:

1. ``Host`` must be an IP address, localhost or a configured name (``exposure.host_allowed``:
   against DNS rebinding).
2. The live feed's ``Origin``, when a browser sends one, must be the page's own (the same
   host and port as ``Host``) or a configured origin: another site's page cannot open it.
3. With a token configured, every request needs it, loopback included: a reverse proxy that
   adds no forwarding header connects from loopback, so loopback cannot be told from the
   proxy's clients. It travels as ``Authorization: Bearer``, or as ``?token=`` on the page
   once: the answer then sets an HttpOnly, SameSite=Strict cookie (a keyed hash of the
   token, not the token) that the page and its feed carry from then on, and moves the
   browser to the page's URL without the token (``remembered``).
4. Without a token, only loopback peers without forwarding headers get in.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import re
from collections.abc import Collection
from urllib.parse import urlencode, urlsplit

import attrs

from ...front.exposure import bearer_token, host_allowed, is_local, same_secret, split_authority
from ...front.http import Request, Response

TOKEN_ENV = "CORRAL_DASHBOARD_TOKEN"
"""The environment variable ``corral serve --dashboard`` reads the token from."""
TOKEN_QUERY = "token"
COOKIE = "corral_dashboard"
_REPLACE_PAGE = (
    '<!doctype html><meta name="referrer" content="no-referrer">'
    '<meta http-equiv="refresh" content="0; url={attribute}">'
    "<script>location.replace({script});</script>"
    '<a href="{attribute}">the corral dashboard</a>\n'
)
"""What a right ``?token=`` gets: the cookie, and a same-site move to the URL without it."""
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _lower_set(values: Collection[str]) -> frozenset[str]:
    return frozenset(value.lower() for value in values)


@attrs.frozen
class DashboardAccess:
    """The dashboard's access rules: its token, extra host names and extra feed origins."""

    token: str | None = None
    hosts: frozenset[str] = attrs.field(default=frozenset(), converter=_lower_set)
    """Host names accepted besides IP addresses and localhost (``--dashboard-host``)."""
    origins: frozenset[str] = attrs.field(default=frozenset(), converter=_lower_set)
    """Origins (``https://ops.example``) whose pages may open the feed besides its own."""

    def page_refusal(self, request: Request) -> Response | None:
        """None when the page may be served; else the 403."""
        return self._refusal(request, page=True)

    def feed_refusal(self, request: Request) -> Response | None:
        """None when the feed may be opened; else the 403."""
        if not origin_allowed(request, self.origins):
            return forbidden(f"origin {request.header('origin')!r} may not open this feed")
        return self._refusal(request, page=False)

    def remembered(self, request: Request, cookie_path: str) -> Response | None:
        """The answer that trades a right ``?token=`` for the cookie; None without one.

        A page that sets the cookie and replaces itself with its URL without the token,
        rather than a 303: a SameSite=Strict cookie does not ride a redirect chain that
        began on another site (a link in a chat or a mail), while the page's own
        navigation is same-site.
        """
        if request.query_value(TOKEN_QUERY) is None or not self._query_token_ok(request):
            return None
        secure = "; Secure" if request.scheme == "https" else ""
        cookie = f"{COOKIE}={cookie_value(self.token or '')}; Path={cookie_path}; HttpOnly"
        target = _without_token(request)
        body = _REPLACE_PAGE.format(
            script=json.dumps(target).replace("</", "<\\/"), attribute=html.escape(target)
        )
        return Response(
            200,
            [
                ("Content-Type", "text/html; charset=utf-8"),
                ("Set-Cookie", f"{cookie}; SameSite=Strict{secure}"),
                ("Cache-Control", "no-store"),
                ("Referrer-Policy", "no-referrer"),
            ],
            body.encode(),
        )

    def _refusal(self, request: Request, *, page: bool) -> Response | None:
        if not host_allowed(request, self.hosts):
            return forbidden(
                f"host {request.header('host')!r} is not a name this dashboard answers to "
                "(an IP address, localhost, or one given with --dashboard-host)"
            )
        if self.token:
            if self._has_token(request) or (page and self._query_token_ok(request)):
                return None
            return forbidden("the corral dashboard needs its token")
        if is_local(request):
            return None
        return forbidden("the corral dashboard answers loopback only (no token is configured)")

    def _has_token(self, request: Request) -> bool:
        if same_secret(bearer_token(request), self.token):
            return True
        return same_secret(_cookie(request), cookie_value(self.token or ""))

    def _query_token_ok(self, request: Request) -> bool:
        return same_secret(request.query_value(TOKEN_QUERY), self.token)


def cookie_value(token: str) -> str:
    """What the cookie holds: a keyed hash of the token (the token itself never lands in a
    browser's cookie jar)."""
    return hmac.new(token.encode(), b"corral dashboard cookie", hashlib.sha256).hexdigest()


def origin_allowed(request: Request, origins: Collection[str] = ()) -> bool:
    """Whether a browser's ``Origin`` is the request's own host and port, or listed in
    ``origins`` (lower case); a request without ``Origin`` (not a browser) passes."""
    origin = request.header("origin")
    if origin is None:
        return True
    if origin.lower() in origins:
        return True
    host = request.header("host")
    parts = urlsplit(origin.lower())
    if host is None or parts.scheme not in _DEFAULT_PORTS or not parts.netloc:
        return False  # "null" (a sandboxed page, a file) among others
    default = _DEFAULT_PORTS[parts.scheme]
    origin_host, origin_port = split_authority(parts.netloc)
    own_host, own_port = split_authority(host)
    return (origin_host, origin_port or default) == (own_host, own_port or default)


def forbidden(reason: str) -> Response:
    """The 403, saying what would be let in."""
    return Response.text(403, f"Forbidden: {reason}")


def _cookie(request: Request) -> str | None:
    """The dashboard's cookie value (several Cookie fields arrive joined with ", ")."""
    for pair in re.split("[;,]", request.header("cookie") or ""):
        name, _, value = pair.strip().partition("=")
        if name == COOKIE:
            return value.strip()
    return None


def _without_token(request: Request) -> str:
    kept = [(name, value) for name, values in request.query.items() for value in values]
    query = urlencode([(name, value) for name, value in kept if name != TOKEN_QUERY])
    return request.path + (f"?{query}" if query else "")
