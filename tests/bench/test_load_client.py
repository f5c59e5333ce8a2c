"""The load client's processes against a real (websockets) echo server: a small, fast check
that opening, holding, checking, closing and probing work as the benches expect."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from common import run_clients, run_server  # noqa: E402


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
