"""The ASGI benchmark runs end to end and prints every server's figures and the ratios (no
timing asserted); its reading of wrk's output is checked on a sample."""

from __future__ import annotations

import os
import re
import shutil

import pytest

from .kit import BENCH, NUMBER, load_bench, run_bench

WRK_OUTPUT = """\
Running 1s test @ http://127.0.0.1:40000/items/3?q=x
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    13.82ms    6.22ms  44.37ms   70.21%
    Req/Sec     3.65k   375.11     4.03k    87.50%
  Latency Distribution
     50%  844.00us
     75%   16.65ms
     90%   22.35ms
     99%    1.02s{space}
  14545 requests in 4.00s, 2.12MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   3634.05
Transfer/sec:    542.34KB
""".format(space=" ")  # wrk pads a unit of one letter: "1.02s "


def test_wrk_output_is_read_with_its_units_and_errors() -> None:
    bench = load_bench(BENCH / "asgi.py")
    assert bench.parse_wrk(WRK_OUTPUT) == (14545, 3634.05, 0.844, 1020.0, 7)


def _need_wrk() -> None:
    if shutil.which("wrk") is None:
        reason = "wrk is not on PATH (scripts/setup-wrk installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.mark.slow
def test_quick_run_prints_every_server_and_the_ratios() -> None:
    _need_wrk()
    run = run_bench("asgi.py", "--quick", timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    for server in ("corral", "uvicorn", "hypercorn-trio"):
        assert re.search(rf"^{server}\s+{NUMBER}\s+{NUMBER}", run.stdout, re.M), run.stdout
    assert re.search(r"^corral/uvicorn: req/s [\d.]+x", run.stdout, re.M), run.stdout
    assert re.search(r"^corral/hypercorn-trio: req/s [\d.]+x .*(MET|MISSED)", run.stdout, re.M)
    assert re.search(r"^wrk's CPU per request is \d+%", run.stdout, re.M), run.stdout


@pytest.mark.slow
def test_quick_websocket_run_compares_with_and_without_the_app() -> None:
    run = run_bench("asgi.py", "--websocket", "--quick", timeout=400)
    assert run.returncode == 0, run.stdout + run.stderr
    for figure in ("echo 50 conns rt/s", "fan-out deliveries/s"):
        assert re.search(rf"^with/without ASGI, {figure}: [\d.]+x", run.stdout, re.M), run.stdout
