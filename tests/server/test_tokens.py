"""Signed tokens for init: verification as pure decisions (explicit ``now``), then refusals
and an upgrade over real sockets."""

from __future__ import annotations

import base64
import json
import logging
import time

import attrs
import jwt
import pytest
from trio_websocket import ConnectionRejected

from server import App, Request, Response, Text, Upgrade, WebSocketHandler, websocket
from server.tokens import (
    Claims,
    InvalidToken,
    TokenAuth,
    chosen_subprotocol,
    token_from,
)

from .kit import client, running_clean

SECRET = "s" * 32
NOW = 1_800_000_000.0
auth = TokenAuth(SECRET, leeway=30.0)


def test_a_token_verifies_with_its_subject_topics_and_claims() -> None:
    token = auth.issue("ann", expires_in=60, topics=["room:lobby"], claims={"role": "op"}, now=NOW)
    claims = auth.verify(token, now=NOW + 59)
    assert claims == Claims("ann", NOW + 60, ("room:lobby",), {"role": "op"})


def test_an_expired_token_is_refused_past_the_leeway_only() -> None:
    token = auth.issue("ann", expires_in=60, now=NOW)
    assert auth.verify(token, now=NOW + 60 + 29).subject == "ann"  # the clocks disagree a bit
    with pytest.raises(InvalidToken, match="expired"):
        auth.verify(token, now=NOW + 60 + 31)


def test_a_token_from_the_future_is_refused_past_the_leeway_only() -> None:
    token = auth.issue("ann", expires_in=600, claims={}, now=NOW)
    payload = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_signature": False})
    early = jwt.encode({**payload, "nbf": NOW + 100}, SECRET, algorithm="HS256")
    assert auth.verify(early, now=NOW + 71).subject == "ann"
    with pytest.raises(InvalidToken, match="not valid for another"):
        auth.verify(early, now=NOW + 69)


def test_a_tampered_token_is_refused() -> None:
    header, payload, signature = auth.issue("ann", expires_in=60, now=NOW).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = base64.urlsafe_b64encode(json.dumps({**claims, "sub": "root"}).encode())
    with pytest.raises(InvalidToken, match="not a valid token"):
        auth.verify(f"{header}.{forged.decode().rstrip('=')}.{signature}", now=NOW)


def test_a_token_signed_with_another_secret_or_algorithm_is_refused() -> None:
    other = TokenAuth("t" * 32).issue("ann", expires_in=60, now=NOW)
    unsigned = jwt.encode({"sub": "ann", "exp": NOW + 60}, "", algorithm="none")
    for token in (other, unsigned, "not.a.token", ""):
        with pytest.raises(InvalidToken):
            auth.verify(token, now=NOW)


def test_a_token_without_an_expiry_or_with_bad_claims_is_refused() -> None:
    for payload in (
        {"sub": "ann"},
        {"exp": NOW + 60},
        {"sub": "ann", "exp": "tomorrow"},
        {"sub": "ann", "exp": NOW + 60, "topics": "room:lobby"},
    ):
        with pytest.raises(InvalidToken):
            auth.verify(jwt.encode(payload, SECRET, algorithm="HS256"), now=NOW)


def test_a_short_secret_is_refused_and_never_shown() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        TokenAuth("short")
    assert SECRET not in repr(auth)


def test_topics_allow_names_and_prefixes_and_none_allows_all() -> None:
    claims = Claims("ann", NOW, ("room:lobby", "news:*"))
    assert claims.allows("room:lobby") and claims.allows("news:sport")
    assert not claims.allows("room:lobby2") and not claims.allows("room:other")
    assert Claims("ann", NOW).allows("anything")
    assert not Claims("ann", NOW, ()).allows("room:lobby")


def request(*headers: tuple[str, str]) -> Request:
    return Request("GET", "/ws", "/ws", {}, headers)


def test_the_token_comes_from_the_authorization_header_or_a_subprotocol() -> None:
    assert token_from(request(("authorization", "Bearer abc.def.ghi"))) == "abc.def.ghi"
    offered = request(("sec-websocket-protocol", "chat, bearer.abc.def.ghi"))
    assert token_from(offered) == "abc.def.ghi" and chosen_subprotocol(offered) == "chat"
    assert token_from(request(("authorization", "Basic dXNlcjpwdw=="))) is None
    assert token_from(request()) is None


@attrs.frozen
class Guarded(WebSocketHandler[str]):
    """Upgrades holders of a token for the topic in the path; echoes the token's subject."""

    auth: TokenAuth

    def init(self, request: Request) -> Upgrade[str] | Response:
        verdict = self.auth.authenticate(request, topic=f"room:{request.bindings['room']}")
        if isinstance(verdict, Response):
            return verdict
        return Upgrade(verdict.subject, subprotocol=chosen_subprotocol(request))

    def websocket_init(self, state: str) -> tuple[Text, str]:
        return Text(f"hello {state}"), state


APP = App([websocket("/ws/:room", Guarded(auth))])


async def refusal(url: str, *headers: tuple[str, str]) -> tuple[int, bytes]:
    """The status and body of a refused upgrade."""
    with pytest.raises(ConnectionRejected) as rejected:
        async with client(url, extra_headers=headers):
            pass
    return rejected.value.status_code, rejected.value.body or b""


async def test_upgrades_are_refused_without_a_valid_token_and_say_nothing_of_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "corral.server.tokens")
    expired = auth.issue("ann", expires_in=60, now=time.time() - 3600)
    wrong = TokenAuth("t" * 32).issue("ann", expires_in=60)
    elsewhere = auth.issue("ann", expires_in=60, topics=["room:other"])
    async with running_clean(APP) as server:
        url = server.url("/ws/lobby")
        assert await refusal(url) == (401, b"")
        for token in (expired, wrong, "garbage"):
            header = ("Authorization", f"Bearer {token}")
            assert await refusal(url, header) == (401, b"")
        header = ("Authorization", f"Bearer {elsewhere}")
        assert await refusal(url, header) == (403, b"")
    assert "expired" in caplog.text and "may not use 'room:lobby'" in caplog.text
    for token in (expired, wrong, elsewhere):
        assert token not in caplog.text


async def test_a_valid_token_upgrades_from_a_header_or_a_subprotocol() -> None:
    token = auth.issue("ann", expires_in=60, topics=["room:*"])
    async with running_clean(APP) as server:
        url = server.url("/ws/lobby")
        async with client(url, extra_headers=[("Authorization", f"Bearer {token}")]) as ws:
            assert await ws.get_message() == "hello ann"
        async with client(url, subprotocols=["chat", f"bearer.{token}"]) as ws:
            assert ws.subprotocol == "chat"
            assert await ws.get_message() == "hello ann"
