"""The echo benchmarks run and print their figures; their raw client speaks valid WebSocket.

The quick runs start real servers in subprocesses (slow); nothing here checks a timing.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import wsproto.events
from wsproto import ConnectionType, WSConnection
from wsproto.frame_protocol import FrameProtocol

from .kit import load_bench

BENCH = Path(__file__).resolve().parents[2] / "bench"
NUMBER = r"[\d,]+(?:\.\d+)?"


def _load(name: str) -> ModuleType:
    return load_bench(BENCH / f"{name}.py")


def _run(script: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quick_echo_throughput_prints_every_server_and_the_targets() -> None:
    run = _run("echo_throughput.py", "--quick", timeout=280)
    assert run.returncode == 0, run.stderr
    for connections in (1, 50):
        for server in ("corral", "websockets", "bare"):
            row = rf"^{connections}\s+{server}\s+{NUMBER}(\s+\d+\.\d)(\s+\d+\.\d)\s+\d+%\s+\d+%"
            assert re.search(row, run.stdout, re.MULTILINE), run.stdout
        target = (
            rf"^{connections} conns: corral/websockets rt/s \d+\.\d\dx .* target >= 1\.0x "
            r"(PASS|MISS); server CPU/rt \d+\.\d\dx websockets' target <= 1\.0x (PASS|MISS); "
        )
        assert re.search(target, run.stdout, re.MULTILINE), run.stdout
    assert re.search(r"^client CPU/rt at most \d+\.\d\dx the server's", run.stdout, re.M)
    assert re.search(r"^echoed: [\d,]+ round trips checked .*; 0 wrong or lost$", run.stdout, re.M)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_quick_idle_memory_prints_kb_per_connection_and_opens_per_second() -> None:
    run = _run("idle_memory.py", "--quick", timeout=580)
    assert run.returncode == 0, run.stderr
    for server in ("corral", "websockets", "bare"):
        row = rf"^{server}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+\S+\s+{NUMBER}\s+\d+\s+\d+\s+"
        assert re.search(row, run.stdout, re.M), run.stdout
    assert re.search(
        r"^corral memory per idle connection: \d+\.\d KB target <= 10 KB (PASS|MISS); ",
        run.stdout,
        re.M,
    ), run.stdout
    assert re.search(
        r"^corral/websockets opens/s: \d+\.\d\dx target >= 1\.2x (PASS|MISS)$", run.stdout, re.M
    )
    assert re.search(r"^all 1,000 connections open at every reading$", run.stdout, re.M)


def test_client_frames_are_masked_messages_a_server_accepts() -> None:
    client = _load("wsclient")
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(client.handshake(9001))
    request = next(server.events())
    assert isinstance(request, wsproto.events.Request) and request.target == "/"
    server.send(wsproto.events.AcceptConnection())
    long = "é" * 40_000
    frames = client.client_frame(b"x" * 32) + client.client_frame(b"y" * 32, client.BINARY)
    server.receive_data(frames + client.client_frame(long.encode()) + client.PING)
    text, binary, big, ping = list(server.events())
    assert isinstance(text, wsproto.events.TextMessage) and text.data == "x" * 32
    assert isinstance(binary, wsproto.events.BytesMessage) and binary.data == b"y" * 32
    assert isinstance(big, wsproto.events.TextMessage) and big.data == long
    assert isinstance(ping, wsproto.events.Ping) and ping.payload == b""
    server.receive_data(client.CLOSE_1000)
    (close,) = server.events()
    assert isinstance(close, wsproto.events.CloseConnection) and close.code == 1000


def test_server_frame_and_pong_are_what_wsproto_sends() -> None:
    client = _load("wsclient")
    server = FrameProtocol(client=False, extensions=[])
    assert client.server_frame(b"y" * 32) == server.send_data("y" * 32, fin=True)
    assert client.server_frame(b"z" * 300, client.BINARY) == server.send_data(b"z" * 300, fin=True)
    assert client.PONG == server.pong(b"")
