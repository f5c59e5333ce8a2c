"""Signed, expiring tokens for a handler's ``init``: issue one, verify one, decide on a request.

A token is a JWT (RFC 7519) signed with HMAC-SHA256 under a secret the issuer and the server
share (at least 32 bytes: RFC 7518 asks that of an HS256 key), so a login service written in
any language can issue what corral verifies. It carries a subject (``sub``: who), an expiry
(``exp``), optionally the topics it allows (``topics``: names, or prefixes ending in ``*``) and
any other claims the application wants. PyJWT checks the signature; the times are checked here,
against a ``now`` a test can pass, with ``leeway`` seconds for clocks that disagree.

Where the client puts it: ``Authorization: Bearer <token>`` (programs), or, from a browser,
which cannot set headers on a WebSocket, as one of the subprotocols it offers, prefixed
``bearer.`` (``new WebSocket(url, ["chat", "bearer." + token])``; a JWT is made of characters a
subprotocol may hold). Not the query string, which access logs, proxies and browser history
keep; not a cookie, which any other site's page gets sent along with its own WebSocket
(cross-site WebSocket hijacking). A browser that offers subprotocols needs one answered:
``Upgrade(subprotocol=chosen_subprotocol(request))`` picks the first that is not the token.

``TokenAuth.authenticate(request, topic=...)`` returns the verified ``Claims`` or the refusal to
return from ``init``: 401 when the token is missing, malformed, badly signed or expired, 403
when it is valid but does not allow ``topic``; neither says why (the server logs it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from actors.extras import MissingExtra

from .front.http import Request, Response

try:
    import jwt
except ModuleNotFoundError as missing:
    raise MissingExtra("tokens", "signed tokens (server.tokens)") from missing

logger = logging.getLogger("corral.server.tokens")

ALGORITHM = "HS256"
"""The only signature accepted (a token naming another is refused: no algorithm confusion)."""
MIN_SECRET_BYTES = 32
"""RFC 7518 3.2: an HS256 key is at least as long as the hash (256 bits)."""
DEFAULT_LEEWAY = 30.0
"""Seconds by which the issuer's clock and the server's may disagree."""
PROTOCOL_PREFIX = "bearer."
"""A subprotocol offered as ``bearer.<token>`` carries the token (browsers)."""
_REGISTERED = frozenset({"sub", "exp", "nbf", "iat", "topics"})


class InvalidToken(Exception):
    """A token that does not verify; the message says why, for the server's log only."""


@attrs.frozen
class Claims:
    """What a verified token says."""

    subject: str
    """Who the token was issued to (``sub``)."""
    expires: float
    """When it stops being valid (``exp``, seconds since the epoch)."""
    topics: tuple[str, ...] | None = None
    """The topics it allows: names, or prefixes ending in ``*``; None: any topic."""
    extra: Mapping[str, Any] = attrs.field(factory=dict)
    """Every other claim, as issued."""

    def allows(self, topic: str) -> bool:
        """Whether this token lets its holder use ``topic`` (subscribe, join, publish...)."""
        if self.topics is None:
            return True
        return any(
            topic.startswith(allowed[:-1]) if allowed.endswith("*") else topic == allowed
            for allowed in self.topics
        )


def _secret_bytes(_: object, attribute: attrs.Attribute[Any], value: str | bytes) -> None:
    size = len(value.encode() if isinstance(value, str) else value)
    if size < MIN_SECRET_BYTES:
        raise ValueError(f"{attribute.name} must be at least {MIN_SECRET_BYTES} bytes, not {size}")


@attrs.frozen(repr=False)
class TokenAuth:
    """Issues and verifies tokens under one ``secret`` (keep it out of the code: an env var)."""

    secret: str | bytes = attrs.field(validator=_secret_bytes)
    leeway: float = DEFAULT_LEEWAY

    def __repr__(self) -> str:
        return f"TokenAuth(secret=<hidden>, leeway={self.leeway!r})"

    def issue(
        self,
        subject: str,
        *,
        expires_in: float,
        topics: Sequence[str] | None = None,
        claims: Mapping[str, Any] | None = None,
        now: float | None = None,
    ) -> str:
        """A token for ``subject`` valid for ``expires_in`` seconds from ``now`` (the clock's
        time if None), allowing ``topics`` (None: any), carrying ``claims`` too."""
        issued = time.time() if now is None else now
        payload: dict[str, Any] = dict(claims or {})
        clash = _REGISTERED & payload.keys()
        if clash:
            raise ValueError(f"claims {sorted(clash)} are set by issue's own arguments")
        payload.update(sub=subject, iat=int(issued), exp=issued + expires_in)
        if topics is not None:
            payload["topics"] = list(topics)
        return jwt.encode(payload, self.secret, algorithm=ALGORITHM)

    def verify(self, token: str, *, now: float | None = None) -> Claims:
        """The claims of ``token`` if its signature is ours and it is valid at ``now`` (give or
        take ``leeway``); InvalidToken if not."""
        try:
            payload = jwt.decode(
                token,
                self.secret,
                algorithms=[ALGORITHM],
                options={
                    "require": ["sub", "exp"],
                    "verify_exp": False,  # checked below, against ``now``
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(f"not a valid token: {exc}") from None
        return _checked(payload, time.time() if now is None else now, self.leeway)

    def authenticate(
        self, request: Request, *, topic: str | None = None, now: float | None = None
    ) -> Claims | Response:
        """For ``init``: the request's verified claims, or the refusal to return (401: no valid
        token; 403: valid, but not for ``topic``). Why is logged, never sent."""
        token = token_from(request)
        if token is None:
            logger.info("%s %s: refused (401): no token", request.peer, request.path)
            return unauthorized()
        try:
            claims = self.verify(token, now=now)
        except InvalidToken as exc:
            logger.info("%s %s: refused (401): %s", request.peer, request.path, exc)
            return unauthorized()
        if topic is not None and not claims.allows(topic):
            logger.info(
                "%s %s: refused (403): %r may not use %r",
                request.peer,
                request.path,
                claims.subject,
                topic,
            )
            return forbidden()
        return claims


def _checked(payload: dict[str, Any], now: float, leeway: float) -> Claims:
    """Claims from a payload whose signature verified, if its times and types are right."""
    subject, expires, not_before = payload.pop("sub"), payload.pop("exp"), payload.pop("nbf", None)
    payload.pop("iat", None)
    topics = payload.pop("topics", None)
    if not isinstance(expires, int | float) or isinstance(expires, bool):
        raise InvalidToken(f"exp is not a time: {expires!r}")
    if now > expires + leeway:
        raise InvalidToken(f"expired {now - expires:.0f} s ago")
    if not_before is not None:
        if not isinstance(not_before, int | float) or isinstance(not_before, bool):
            raise InvalidToken(f"nbf is not a time: {not_before!r}")
        if now < not_before - leeway:
            raise InvalidToken(f"not valid for another {not_before - now:.0f} s")
    if topics is not None and not (
        isinstance(topics, list) and all(isinstance(topic, str) for topic in topics)
    ):
        raise InvalidToken(f"topics is not a list of names: {topics!r}")
    return Claims(str(subject), float(expires), None if topics is None else tuple(topics), payload)


def token_from(request: Request) -> str | None:
    """The token a request carries: ``Authorization: Bearer <token>``, else a subprotocol
    ``bearer.<token>``; None if neither."""
    authorization = request.header("authorization")
    if authorization is not None:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    for protocol in request.subprotocols:
        if protocol.startswith(PROTOCOL_PREFIX) and len(protocol) > len(PROTOCOL_PREFIX):
            return protocol[len(PROTOCOL_PREFIX) :]
    return None


def chosen_subprotocol(request: Request) -> str | None:
    """The first subprotocol the client offers that is not a token: the one to answer (a
    browser that offered subprotocols fails the handshake if none is answered)."""
    for protocol in request.subprotocols:
        if not protocol.startswith(PROTOCOL_PREFIX):
            return protocol
    return None


def unauthorized() -> Response:
    """401 with no detail: the token is missing or not valid."""
    return Response(401, (("WWW-Authenticate", "Bearer"),))


def forbidden() -> Response:
    """403 with no detail: the token is valid, but not for this."""
    return Response(403)
