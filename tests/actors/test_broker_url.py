"""Broker URLs checked before anything connects: what is allowed, what each mistake says,
where credentials come from, and that a password is never shown."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from actors.broker_url import (
    PASSWORD_ENV,
    USERNAME_ENV,
    BadBrokerUrl,
    parse_broker_url,
    redact,
)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1",
        "redis://127.0.0.1:6379/0",
        "redis://user:pass@redis.internal:6380/2",
        "redis://:pass@[::1]:6379",
        "rediss://redis.internal:6380?ssl_cert_reqs=required&ssl_check_hostname=true",
        "unix:///run/redis/redis.sock",
        "redis://127.0.0.1?db=3",
    ],
)
def test_good_urls_pass_as_given(url: str) -> None:
    assert parse_broker_url(url, {}).url == url


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("foo", "has no scheme, not one of redis, rediss, unix"),
        ("http://127.0.0.1:6379", "has scheme 'http', not one of redis, rediss, unix"),
        ("redis://127.0.0.1:99999", "has a bad port"),
        ("redis://127.0.0.1:65536", "has a bad port"),
        ("redis://127.0.0.1:port", "has a bad port"),
        ("redis://127.0.0.1:0", "has port 0; a port is 1 to 65535"),
        ("redis://:6379", "names no host"),
        ("redis://127.0.0.1/zero", "has database 'zero'"),
        ("redis://127.0.0.1?db=x", "has database 'x'"),
        ("unix://", "names no socket path"),
        ("redis://127.0.0.1?timeout=3", "unknown option 'timeout' for redis://; allowed: db"),
        ("redis://127.0.0.1?ssl_ca_certs=ca.pem", "(TLS options need rediss://)"),
        ("rediss://127.0.0.1?ssl_ca_certs=/no/such/ca.pem", "'/no/such/ca.pem', which is not a"),
        ("rediss://127.0.0.1?ssl_cert_reqs=maybe", "not one of none, optional, required"),
    ],
)
def test_a_bad_url_says_what_is_wrong_and_what_is_expected(url: str, says: str) -> None:
    with pytest.raises(BadBrokerUrl) as raised:
        parse_broker_url(url, {})
    assert says in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_ca_file_that_exists_is_accepted(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here: the TLS handshake reads it")
    assert parse_broker_url(f"rediss://127.0.0.1?ssl_ca_certs={ca}", {}).tls


def test_credentials_come_from_the_environment_unless_the_url_has_its_own() -> None:
    environ = {USERNAME_ENV: "node", PASSWORD_ENV: "from-env"}
    assert parse_broker_url("redis://h", environ).client_options() == {
        "username": "node",
        "password": "from-env",
    }
    assert parse_broker_url("redis://u:p@h", environ).client_options() == {}
    assert parse_broker_url("redis://h", {}).client_options() == {}


def test_a_password_is_never_shown() -> None:
    assert redact("redis://user:s3cret@h:1/0") == "redis://user:***@h:1/0"
    assert redact("rediss://:s3cret@h") == "rediss://:***@h"
    assert redact("redis://h:1") == "redis://h:1"
    checked = parse_broker_url("redis://user:s3cret@h:1", {PASSWORD_ENV: "env-secret"})
    assert "s3cret" not in repr(checked) and "s3cret" not in checked.redacted
    with pytest.raises(BadBrokerUrl) as raised:
        parse_broker_url("http://user:s3cret@h", {})
    assert "s3cret" not in str(raised.value)


def test_a_redis_cluster_url_names_its_seed_nodes() -> None:
    broker = parse_broker_url("redis+cluster://ann:secret@10.0.0.1:7000,[::1]:7001", environ={})
    assert broker.cluster and broker.seeds == (("10.0.0.1", 7000), ("::1", 7001))
    assert broker.client_options() == {"username": "ann", "password": "secret"}
    assert broker.redacted == "redis+cluster://ann:***@10.0.0.1:7000,[::1]:7001"
    assert not parse_broker_url("redis://127.0.0.1:6379", environ={}).cluster


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+cluster://127.0.0.1", "seed '127.0.0.1' is not host:port"),
        ("redis+cluster://127.0.0.1:7000,:7001", "seed ':7001' is not host:port"),
        ("redis+cluster://127.0.0.1:70000", "seed '127.0.0.1:70000' is not host:port"),
        ("redis+cluster://127.0.0.1:7000/1", "a Redis Cluster has no database"),
    ],
)
def test_a_bad_cluster_url_says_which_seed_is_wrong(url: str, says: str) -> None:
    with pytest.raises(BadBrokerUrl, match=re.escape(says)):
        parse_broker_url(url, environ={})
