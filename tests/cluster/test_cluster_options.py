"""How a server is told to join a cluster: --redis, CORRAL_REDIS_URL, ServerOptions; what a
bad URL says, and what happens when Redis does not answer at start-up."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import trio

from actors import LocalBackend
from actors.backend_redis import RedisBackend
from server import App, ServerOptions
from server.run.cli import _options, _parser, main
from server.run.supervised import Server
from server.run.workers import worker_command
from tests.server.corral_process import CORRAL, ROOT, STARTUP, corral_serve

from .redis_kit import RedisServer, free_port

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


def test_failure_detection_sets_the_lease_with_five_heartbeats_in_it():
    assert ServerOptions().failure_detection == 5.0
    options = _options(APP, _serve_args("--failure-detection", "2.5"))
    backend = Server(App([]), options=options)._backend()
    assert isinstance(backend, RedisBackend)
    assert (backend.lease, backend.heartbeat) == (2.5, 0.5)


def test_a_worker_runs_the_same_command_without_workers_and_with_reuse_port():
    command = worker_command(["serve", "m:app", "--workers", "3", "--port", "80", "--workers=2"])
    assert command[1:] == ["-m", "server.run.cli", "serve", "m:app", "--port", "80", "--worker"]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("foo", "has no scheme"),
        ("http://127.0.0.1:6379", "has scheme 'http'"),
        ("redis://127.0.0.1:99999", "has a bad port"),
        ("redis://:6379", "names no host"),
    ],
)
def test_a_bad_redis_url_exits_2_with_one_line_naming_it(
    url: str, says: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CORRAL_REDIS_URL", raising=False)
    assert main(["serve", "tests.cluster.apps:app", "--port", "0", "--redis", url]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"corral: --redis {url!r} {says}")
    assert "expected redis://" in line or "a port is" in line


def test_a_bad_redis_url_from_the_environment_exits_2_too(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORRAL_REDIS_URL", "redis://user:s3cret@127.0.0.1:70000")
    assert main(["serve", "tests.cluster.apps:app", "--port", "0"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "has a bad port" in line and "s3cret" not in line


def test_a_negative_redis_wait_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["serve", "tests.cluster.apps:app", "--redis", "redis://h", "--redis-wait", "-1"]
    assert main(argv) == 2
    assert "--redis-wait must be a number of seconds >= 0" in capsys.readouterr().err


def test_a_redis_that_does_not_answer_fails_the_start_at_once_in_one_line() -> None:
    url = f"redis://127.0.0.1:{free_port()}"
    done = subprocess.run(
        [str(CORRAL), "serve", "tests.cluster.apps:app", "--port", "0", "--redis", url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=STARTUP,
    )
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"corral: Redis at {url} is unreachable at start-up")
    assert line.endswith("or wait for it with --redis-wait SECONDS")


async def test_redis_wait_serves_once_redis_comes_up(tmp_path: Path, prefix: str) -> None:
    server = RedisServer()
    args = ["tests.cluster.apps:app", "--redis", server.url, "--redis-wait", "30"]
    args += ["--cluster-prefix", prefix]
    try:
        async with trio.open_nursery() as nursery:

            async def start_redis_once_corral_waits() -> None:
                log = tmp_path / "corral.log"
                while "waiting up to 30 s for Redis" not in (
                    log.read_text() if log.exists() else ""
                ):
                    await trio.sleep(0.02)
                server.start()

            nursery.start_soon(start_redis_once_corral_waits)
            async with corral_serve(tmp_path, *args) as corral:
                assert "joined the cluster" in corral.log
    finally:
        server.stop()
