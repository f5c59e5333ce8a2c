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
def test_quick_echo_throughput_prints_a_ratio_per_connection_count() -> None:
    run = _run("echo_throughput.py", "--quick", timeout=280)
    assert run.returncode == 0, run.stderr
    for connections in (1, 50):
        row = rf"^{connections}\s+{NUMBER}\s+{NUMBER}\s+\d+\.\d\dx\s.*\s(PASS|MISS)\s+\d+\.\d\dx\s"
        assert re.search(row, run.stdout, re.MULTILINE), run.stdout
    assert re.search(r"^echoed: [\d,]+ round trips checked .*; 0 wrong or lost$", run.stdout, re.M)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_quick_idle_memory_prints_kb_per_connection_for_both_servers() -> None:
    run = _run("idle_memory.py", "--quick", timeout=580)
    assert run.returncode == 0, run.stderr
    assert re.search(
        rf"^corral\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s.*KB\s+(PASS|MISS)\s", run.stdout, re.M
    )
    assert re.search(rf"^bare\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s", run.stdout, re.M), run.stdout
    assert re.search(r"^corral/bare: \d+\.\d\dx .*all 1,000 connections open", run.stdout, re.M)


def test_client_frame_is_a_masked_binary_message_a_server_accepts() -> None:
    common = _load("common")
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(common.handshake(9001))
    request = next(server.events())
    assert isinstance(request, wsproto.events.Request) and request.target == "/"
    server.send(wsproto.events.AcceptConnection())
    server.receive_data(common.client_frame(b"x" * 32) + common.PING)
    message, ping = list(server.events())
    assert isinstance(message, wsproto.events.BytesMessage) and message.data == b"x" * 32
    assert isinstance(ping, wsproto.events.Ping) and ping.payload == b""


def test_server_frame_and_pong_are_what_wsproto_sends() -> None:
    common = _load("common")
    server = FrameProtocol(client=False, extensions=[])
    assert common.server_frame(b"y" * 32) == server.send_data(b"y" * 32, fin=True)
    assert common.PONG == server.pong(b"")


def test_frames_refuse_payloads_needing_an_extended_length() -> None:
    common = _load("common")
    with pytest.raises(ValueError, match="<= 125 bytes"):
        common.client_frame(b"z" * 126)
