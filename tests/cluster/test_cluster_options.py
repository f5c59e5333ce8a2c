"""How a server is told to join a cluster: --redis, CORRAL_REDIS_URL, ServerOptions."""

from __future__ import annotations

import pytest

from actors import LocalBackend
from actors.backend_redis import RedisBackend
from server import App, ServerOptions
from server.cli import _options, _parser
from server.serve import Server
from server.workers import worker_command

APP = App([], options=ServerOptions(redis_url="redis://from-the-app:6379"))


def _serve_args(*extra: str) -> object:
    return _parser().parse_args(["serve", "tests.cluster.apps:app", *extra])


def test_redis_flag_overrides_the_environment_and_the_app(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CORRAL_REDIS_URL", "redis://from-the-environment:6379")
    options = _options(APP, _serve_args("--redis", "redis://from-the-flag:6379"))
    assert options.redis_url == "redis://from-the-flag:6379"


def test_the_environment_overrides_the_app(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CORRAL_REDIS_URL", "redis://from-the-environment:6379")
    assert _options(APP, _serve_args()).redis_url == "redis://from-the-environment:6379"


def test_without_flag_or_environment_the_app_decides(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("CORRAL_REDIS_URL", raising=False)
    assert _options(APP, _serve_args()).redis_url == "redis://from-the-app:6379"
    assert _options(App([]), _serve_args()).redis_url is None


def test_a_server_uses_redis_only_when_a_url_is_given():
    assert Server(App([]))._backend() is None
    clustered = Server(App([]), options=ServerOptions(redis_url="redis://x:1", cluster_prefix="p"))
    backend = clustered._backend()
    assert isinstance(backend, RedisBackend) and backend.keys.prefix == "p"
    assert LocalBackend().node_id is None


def test_a_worker_runs_the_same_command_without_workers_and_with_reuse_port():
    command = worker_command(["serve", "m:app", "--workers", "3", "--port", "80", "--workers=2"])
    assert command[1:] == ["-m", "server.cli", "serve", "m:app", "--port", "80", "--worker"]
