"""Redis with a password, an ACL user or TLS: nodes connect with what the URL or the
environment gives them, and without it fail at start-up in one line that hides the password."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

import actors
from actors import BrokerUnreachable
from actors.backend_redis import RedisBackend
from actors.broker_url import PASSWORD_ENV, USERNAME_ENV
from tests.actors.kit import Recorder

from .conftest import backend_of, two_nodes
from .redis_kit import HOST, RedisServer, free_port

ACL_USER = [
    *("--user", "node", "on", ">node-pw", "resetchannels"),
    *("~corral-test:*", "&corral-test:*", "+@all", "-@dangerous"),
]
"""The README's ACL: only the cluster's keys and channels, no dangerous commands."""


@pytest.fixture
def password_redis() -> Iterator[RedisServer]:
    """A redis-server with a password for the default user and an ACL user ``node``
    limited to the test keys and channels."""
    server = RedisServer(options=["--requirepass", "default-pw", *ACL_USER])
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[RedisServer, Path]]:
    """A redis-server that speaks only TLS, with a certificate from a CA made for the test;
    the CA's file comes with it."""
    ca = trustme.CA()
    certificate = ca.issue_cert(HOST)
    paths = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key")}
    ca.cert_pem.write_to_path(paths["ca"])
    certificate.cert_chain_pems[0].write_to_path(paths["cert"])
    certificate.private_key_pem.write_to_path(paths["key"])
    port = free_port()
    server = RedisServer(
        port,
        options=[
            *("--port", "0", "--tls-port", str(port), "--tls-auth-clients", "no"),
            *("--tls-cert-file", str(paths["cert"]), "--tls-key-file", str(paths["key"])),
            *("--tls-ca-cert-file", str(paths["ca"])),
        ],
    )
    server.start()
    try:
        yield server, paths["ca"]
    finally:
        server.stop()


async def _a_message_crosses(url: str, prefix: str) -> None:
    async with two_nodes(url, prefix) as (a, b, nursery):
        await backend_of(a).wait_until(lambda: a.backend.is_alive("b"))
        recorder = Recorder()
        a.send(b.spawn(nursery, recorder), "across")
        assert await recorder.wait_for_count(1) == ["across"]


async def _start_failure(url: str, prefix: str) -> BrokerUnreachable:
    """What stops a node that must reach Redis at once (the server's default)."""
    backend = RedisBackend(url, prefix=prefix, startup_wait=0)
    failures: list[BaseException] = []
    try:
        async with actors.open_node(backend=backend):
            pass
    except* BrokerUnreachable as group:
        failures.extend(group.exceptions)
    (failure,) = failures
    assert isinstance(failure, BrokerUnreachable)
    return failure


async def test_nodes_meet_on_a_redis_with_the_password_in_the_url(
    password_redis: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="corral.cluster")
    await _a_message_crosses(f"redis://:default-pw@{HOST}:{password_redis.port}", prefix)
    assert "joined the cluster at redis://:***@" in caplog.text
    assert "default-pw" not in caplog.text


async def test_an_acl_user_and_password_from_the_environment(
    password_redis: RedisServer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(USERNAME_ENV, "node")
    monkeypatch.setenv(PASSWORD_ENV, "node-pw")
    await _a_message_crosses(f"redis://{HOST}:{password_redis.port}", prefix)


@pytest.mark.parametrize("credentials", ["", ":wrong@", "node:wrong@"])
async def test_a_missing_or_wrong_password_fails_at_start_up_without_showing_it(
    password_redis: RedisServer, prefix: str, credentials: str
) -> None:
    failure = await _start_failure(f"redis://{credentials}{HOST}:{password_redis.port}", prefix)
    assert "unreachable at start-up" in str(failure)
    assert "wrong" not in str(failure)


async def test_nodes_meet_over_tls_trusting_the_clusters_ca(
    tls_redis: tuple[RedisServer, Path], prefix: str
) -> None:
    server, ca = tls_redis
    await _a_message_crosses(f"rediss://{HOST}:{server.port}?ssl_ca_certs={ca}", prefix)


async def test_tls_to_a_certificate_from_an_unknown_ca_fails_at_start_up(
    tls_redis: tuple[RedisServer, Path], prefix: str
) -> None:
    server, _ = tls_redis
    failure = await _start_failure(f"rediss://{HOST}:{server.port}", prefix)
    assert "unreachable at start-up" in str(failure)


async def test_plain_redis_to_a_tls_only_port_fails_at_start_up(
    tls_redis: tuple[RedisServer, Path], prefix: str
) -> None:
    server, _ = tls_redis
    assert "unreachable at start-up" in str(await _start_failure(server.url, prefix))
