"""``corral serve module:app`` as a subprocess: start, serve, drain on SIGTERM, bad specs.

These run on the real clock (another process keeps its own time); each waits on the log
the server writes to a file, with generous bounds.
"""

from __future__ import annotations

import re
import signal
import socket
from pathlib import Path

import pytest
import trio
import wsproto.events as ev

from server.run.cli import AppNotFound, load_app, main
from server.run.stop_signals import EXIT_AT_ONCE

from .corral_process import CORRAL, ROOT, STARTUP, corral_serve, free_port
from .kit import client, expect_close, raw_client
from .stuck_app import STUCK_LINE


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_signal_closes_every_client_with_1001_and_exits_0(
    tmp_path: Path, signum: signal.Signals
) -> None:
    async with corral_serve(tmp_path, "examples.echo:app", "--drain-timeout", "5") as corral:
        url = f"ws://127.0.0.1:{corral.port}/"
        async with client(url) as a, client(url) as b, client(url) as c:
            for ws in (a, b, c):
                await ws.send_message(f"hello from {id(ws)}")
                with trio.fail_after(5):
                    assert await ws.get_message() == f"hello from {id(ws)}"
            corral.process.send_signal(signum)
            for ws in (a, b, c):
                assert await expect_close(ws) == (1001, None)
            assert await corral.exit_code(timeout=5) == 0
    log = corral.log
    assert f"{signum.name}: draining" in log
    assert "drained" in log
    closes = re.findall(r"closed 127\.0\.0\.1:\d+ / code=1001 reason=server shutdown", log)
    assert len(closes) == 3, log


async def test_a_second_sigterm_during_the_drain_exits_at_once(tmp_path: Path) -> None:
    async with corral_serve(tmp_path, "examples.echo:app", "--drain-timeout", "30") as corral:
        async with raw_client(corral.port) as silent:  # will never answer the close frame
            corral.process.send_signal(signal.SIGTERM)
            closing = await silent.close_event()
            assert closing.code == 1001
            await corral.wait_for_log("SIGTERM: draining")
            with pytest.raises(trio.TooSlowError):  # the drain waits for our answer
                await corral.exit_code(timeout=0.5)
            corral.process.send_signal(signal.SIGTERM)  # the drain would take 5 s more
            assert await corral.exit_code(timeout=3) == EXIT_AT_ONCE
    assert "second SIGTERM: exiting at once" in corral.log


async def test_a_second_sigterm_ends_a_server_whose_loop_is_stuck_naming_the_holder(
    tmp_path: Path,
) -> None:
    app = "tests.server.stuck_app:app"
    async with corral_serve(tmp_path, app, "--block-threshold", "0.1") as corral:
        async with raw_client(corral.port, "/stuck") as stuck:
            await stuck.send(ev.TextMessage("hold the loop"))
            await corral.wait_for_log("loop held for .* ms so far by actor ")  # stuck now
            corral.process.send_signal(signal.SIGTERM)
            await corral.wait_for_log("SIGTERM: draining")  # a drain the loop cannot start
            with pytest.raises(trio.TooSlowError):
                await corral.exit_code(timeout=0.5)
            corral.process.send_signal(signal.SIGTERM)
            assert await corral.exit_code(timeout=5) == EXIT_AT_ONCE
    [line] = [line for line in corral.log.splitlines() if "second SIGTERM" in line]
    assert "second SIGTERM: exiting at once; the loop was running actor " in line
    assert "(handler Stuck, route /stuck, path /stuck)" in line
    assert f" <- stuck_app.py:{STUCK_LINE} in websocket_handle <- connection.py:" in line


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module:app", "corral: cannot import 'no_such_module'"),
        ("examples.echo:nothing", "corral: module examples.echo has no attribute 'nothing'"),
        (
            "examples.echo:Echo",
            "corral: examples.echo:Echo is type, not a corral App or an ASGI app",
        ),
        ("examples.echo", "corral: expected module:attribute (like examples.chat:app)"),
    ],
)
async def test_a_bad_app_spec_exits_2_with_a_clear_message(spec: str, message: str) -> None:
    with trio.fail_after(STARTUP):
        result = await trio.run_process(
            [str(CORRAL), "serve", spec, "--port", str(free_port())],
            cwd=ROOT,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert result.returncode == 2
    assert message in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()


async def _corral_serve_fails(*args: str, cwd: Path = ROOT) -> tuple[int, list[str]]:
    """Run ``corral serve *args``, which must end on its own: its status and stderr lines."""
    with trio.fail_after(STARTUP):
        result = await trio.run_process(
            [str(CORRAL), "serve", *args],
            cwd=cwd,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    return result.returncode, result.stderr.decode().splitlines()


async def test_a_port_in_use_exits_1_with_one_line_naming_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        status, lines = await _corral_serve_fails("examples.echo:app", "--port", port)
    assert status == 1
    assert lines == [f"corral: cannot listen on 127.0.0.1:{port}: Address already in use"]


async def test_workers_on_a_port_in_use_exit_1_with_one_line_and_no_restarts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        status, lines = await _corral_serve_fails(
            "examples.echo:app", "--port", port, "--workers", "2"
        )
    assert status == 1
    assert lines == [f"corral: cannot listen on 127.0.0.1:{port}: Address already in use"]


async def test_a_port_out_of_range_exits_2_with_one_line_before_starting() -> None:
    status, lines = await _corral_serve_fails("examples.echo:app", "--port", "99999")
    assert status == 2
    assert lines == [
        "corral: argument --port: '99999' is not a port: allowed 0 to 65535 (0 picks a free "
        "one); see corral serve --help"
    ]


async def test_an_app_module_with_a_syntax_error_exits_2_naming_file_and_line(
    tmp_path: Path,
) -> None:
    (tmp_path / "typo_app.py").write_text("from server import App\n\napp = App([)\n")
    status, lines = await _corral_serve_fails("typo_app:app", "--port", "0", cwd=tmp_path)
    assert status == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith("corral: cannot import 'typo_app': SyntaxError: ")
    assert lines[0].endswith(f" at {tmp_path / 'typo_app.py'}:3")


def test_serve_help_says_what_each_option_means_and_its_default(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each option's meaning and default, in plain words (no docstring markup)."""
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert "``" not in shown
    options = {
        "--host HOST": "address to listen on (default: 127.0.0.1)",
        "--port PORT": "TCP port to listen on (default: 8080)",
        "--log-level": "(default: info)",
        "--certfile PEM": "serve wss:// (default: plain ws://)",
        "--keyfile PEM": "(default: read from --certfile)",
        "--max-connections N": "HTTP 503 (default: the app's; 10000 unless it sets one)",
        "--max-connections-per-address N": "HTTP 429 (default: the app's; 1000 unless",
        "--max-heads-per-address N": "closed unread (default: the app's; 100 unless",
        "--handshake-timeout SECONDS": "(default: the app's; 10 unless it sets one)",
        "--drain-timeout SECONDS": "(default: the app's; 30 unless it sets one)",
    }
    entries = [" ".join(entry.split()) for entry in re.split(r"\n(?=  -)", shown)]
    for option, meaning in options.items():
        entry = next((entry for entry in entries if entry.startswith(option)), "")
        assert meaning in entry, f"{option}: {entry!r}"
    assert "the App to run, like examples.chat:app" in shown
    assert "A second\nsignal exits at once with status 130" in shown  # as written, unwrapped


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("examples.seed:nope", "module examples.seed has no attribute 'nope'"),
        (
            "examples.seed:MyWsHandler",
            "examples.seed:MyWsHandler is type, not a corral App or an ASGI app",
        ),
    ],
)
def test_load_app_names_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(AppNotFound) as not_found:
        load_app(spec)
    assert str(not_found.value) == message
