"""The Redis URL a cluster meets on: checked before anything connects, and never logged whole.

``redis://[user:password@]host[:port][/db]``, ``rediss://`` for TLS (``?ssl_ca_certs=PEM`` to
trust a private CA; ``ssl_certfile``/``ssl_keyfile`` for a client certificate),
``unix:///path/to/redis.sock``, or ``redis+cluster://[user:password@]host:port[,host:port...]``
for a Redis Cluster (the seed nodes: any of its nodes will do, more survive one being down).
A user name and password left out of the URL come from
``CORRAL_REDIS_USERNAME`` and ``CORRAL_REDIS_PASSWORD`` (so that the password need not sit on a
command line, where ``ps`` shows it). Pure functions: no I/O but checking that named files exist.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import attrs

USERNAME_ENV = "CORRAL_REDIS_USERNAME"
PASSWORD_ENV = "CORRAL_REDIS_PASSWORD"

CLUSTER_SCHEME = "redis+cluster"
SCHEMES = ("redis", "rediss", "unix", CLUSTER_SCHEME)
EXPECTED = (
    "expected redis://[user:password@]host[:port][/db], rediss://... (TLS), "
    "unix:///path/to/redis.sock or redis+cluster://host:port[,host:port...] (Redis Cluster)"
)
TLS_FILES = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
_TLS_CHOICES = {
    "ssl_cert_reqs": ("none", "optional", "required"),
    "ssl_check_hostname": ("true", "false"),
}


class BadBrokerUrl(ValueError):
    """A broker URL that cannot work; the message says what is wrong and what is expected."""


@attrs.frozen(repr=False)
class BrokerUrl:
    """A checked broker URL and the credentials to connect with."""

    url: str
    username: str | None = None
    password: str | None = None
    seeds: tuple[tuple[str, int], ...] = ()
    """A Redis Cluster's seed nodes (``redis+cluster://``); empty for one Redis."""

    @property
    def cluster(self) -> bool:
        """Whether this is a Redis Cluster (sharded pub/sub, keys under one hash tag)."""
        return bool(self.seeds)

    @property
    def redacted(self) -> str:
        """The URL with its password masked: what logs and errors show."""
        return redact(self.url)

    @property
    def tls(self) -> bool:
        """Whether the connection is encrypted (``rediss://``)."""
        return self.url.startswith("rediss:")

    def client_options(self) -> dict[str, Any]:
        """Credentials for ``coredis.Redis.from_url`` (the URL's own win over these), or for
        ``coredis.RedisCluster`` (the URL's own, then these)."""
        options: dict[str, Any] = {}
        if self.cluster:
            parts = urlsplit(self.url)
            options = {"username": parts.username, "password": parts.password}
            options = {key: value for key, value in options.items() if value is not None}
        if self.username is not None:
            options.setdefault("username", self.username)
        if self.password is not None:
            options.setdefault("password", self.password)
        return options

    def __repr__(self) -> str:
        return f"BrokerUrl({self.redacted!r})"


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


def parse_broker_url(url: str, environ: Mapping[str, str] = os.environ) -> BrokerUrl:
    """Check ``url`` (BadBrokerUrl saying what is wrong) and add credentials from ``environ``."""
    shown = repr(redact(url))
    try:
        parts = urlsplit(url)
        port = parts.port if parts.scheme != CLUSTER_SCHEME else None  # a list: _seeds reads it
    except ValueError as error:  # a port out of range or not a number
        raise BadBrokerUrl(f"{shown} has a bad port ({error}); {EXPECTED}") from error
    if parts.scheme not in SCHEMES:
        what = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        raise BadBrokerUrl(f"{shown} has {what}, not one of {', '.join(SCHEMES)}; {EXPECTED}")
    seeds: tuple[tuple[str, int], ...] = ()
    if parts.scheme == "unix":
        if not parts.path:
            raise BadBrokerUrl(f"{shown} names no socket path; {EXPECTED}")
    elif parts.scheme == CLUSTER_SCHEME:
        seeds = _seeds(shown, parts.netloc.rpartition("@")[2], parts.path, parts.query)
    else:
        _check_host(shown, parts.hostname, port, parts.path)
    _check_query(shown, parts.scheme, parse_qs(parts.query, keep_blank_values=True))
    return BrokerUrl(
        url,
        username=None if parts.username else environ.get(USERNAME_ENV) or None,
        password=None if parts.password else environ.get(PASSWORD_ENV) or None,
        seeds=seeds,
    )


def _seeds(shown: str, hosts: str, path: str, query: str) -> tuple[tuple[str, int], ...]:
    """The ``host:port`` seed nodes of a ``redis+cluster://`` URL, checked."""
    if path.strip("/") or query:
        raise BadBrokerUrl(f"{shown}: a Redis Cluster has no database and takes no options")
    seeds = []
    for seed in hosts.split(","):
        host, colon, port = seed.rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise BadBrokerUrl(f"{shown}: seed {seed!r} is not host:port; {EXPECTED}")
        seeds.append((host.strip("[]"), int(port)))
    return tuple(seeds)


def _check_host(shown: str, host: str | None, port: int | None, path: str) -> None:
    if not host:
        raise BadBrokerUrl(f"{shown} names no host; {EXPECTED}")
    if port == 0:
        raise BadBrokerUrl(f"{shown} has port 0; a port is 1 to 65535 (default 6379)")
    database = path.strip("/")
    if database and not database.isdigit():
        raise BadBrokerUrl(f"{shown} has database {database!r}; a database is a number (/0)")


def _check_query(shown: str, scheme: str, query: dict[str, list[str]]) -> None:
    allowed = ("db", *TLS_FILES, *_TLS_CHOICES) if scheme == "rediss" else ("db",)
    for name, values in query.items():
        if name not in allowed:
            tls = " (TLS options need rediss://)" if name in TLS_FILES + tuple(_TLS_CHOICES) else ""
            raise BadBrokerUrl(
                f"{shown}: unknown option {name!r} for {scheme}://{tls}; "
                f"allowed: {', '.join(allowed)}"
            )
        value = values[-1]
        if name in TLS_FILES and not Path(value).is_file():
            raise BadBrokerUrl(f"{shown}: {name} names {value!r}, which is not a file")
        choices = _TLS_CHOICES.get(name)
        if choices is not None and value.lower() not in choices:
            raise BadBrokerUrl(f"{shown}: {name} is {value!r}, not one of {', '.join(choices)}")
        if name == "db" and not value.isdigit():
            raise BadBrokerUrl(f"{shown} has database {value!r}; a database is a number")
