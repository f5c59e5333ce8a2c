"""The load client's processes against a real (websockets) server: a small, fast check that
opening, holding, checking, closing and probing work as the benches expect."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from common import free_port, run_clients, run_server  # noqa: E402
from wsclient import abort, client_frame, open_websocket  # noqa: E402


def test_holders_open_check_and_close_while_a_probe_echoes() -> None:
    with (
        run_server("websockets") as server,
        run_clients("hold", server.port, [["--count", "20", "--source", "127.0.0.2"]]) as (holder,),
        run_clients("probe", server.port, [["--interval", "0.001"]]) as (probe,),
    ):
        ready = holder.event("ready", 30.0)
        assert ready["opened"] == 20 and ready["failed"] == 0
        holder.send("check")
        assert holder.event("alive", 30.0)["alive"] == 20
        probe.event("ready", 30.0)
        holder.send("close")
        closed = holder.event("closed", 30.0)
        assert closed["count"] == closed["closed"] == 20
        probe.send("stop")
        latencies = probe.event("latencies", 30.0)["seconds"]
        assert latencies and all(0 < seconds < 5 for seconds in latencies)


def test_echo_clients_count_round_trips_and_their_own_cpu() -> None:
    with (
        run_server("websockets") as server,
        run_clients("echo", server.port, [["--connections", "3", "--seconds", "0.2"]]) as clients,
    ):
        clients[0].event("ready", 30.0)
        clients[0].send("go")
        done = clients[0].event("done", 30.0)
        assert done["trips"] > 0 and done["wall"] >= 0.2 and done["cpu"] > 0


def test_websockets_idle_mode_upgrades_and_holds_without_answering() -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(BENCH / "websockets_server.py"), "idle", "--port", str(port)]
    )
    try:
        deadline = time.monotonic() + 30.0
        while True:
            try:
                sock = open_websocket(port)
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "the idle server never listened"
                time.sleep(0.05)
        sock.sendall(client_frame(b"hello"))
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(1)  # idle: nothing comes back
        abort(sock)
    finally:
        server.terminate()
        assert server.wait(10.0) == 0
