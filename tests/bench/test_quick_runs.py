"""Every connection benchmark's quick run exits 0 and prints its figures and targets in the
shape bench/README.md describes. Real servers, real sockets, small counts; no timing checked."""

from __future__ import annotations

import pytest

from .kit import NUMBER, assert_printed, run_bench

_ECHO_ROW = rf"\s+{NUMBER}\s+\d+\.\d\s+\d+\.\d\s+\d+%\s+\d+%\s+\d+"
_IDLE_ROW = rf"\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+\S+\s+{NUMBER}\s+\d+\s+\d+\s+{NUMBER}"
_CHURN_ROW = rf"\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+900\s+{NUMBER}"

EXPECTED: dict[str, list[str]] = {
    "echo_throughput.py": [
        *(
            rf"{n}\s+{server}{_ECHO_ROW}"
            for n in (1, 50)
            for server in ("corral", "websockets", "bare")
        ),
        *(
            rf"{n} conns: corral/websockets rt/s \d+\.\d\dx .* target >= 1\.0x (PASS|MISS); "
            r"server CPU/rt \d+\.\d\dx websockets' target <= 1\.0x (PASS|MISS); .*"
            for n in (1, 50)
        ),
        r"client CPU/rt at most \d+\.\d\dx the server's .*",
        r"echoed: [\d,]+ round trips checked byte for byte; 0 wrong or lost",
    ],
    "idle_memory.py": [
        *(server + _IDLE_ROW for server in ("corral", "websockets", "bare")),
        r"corral memory per idle connection: \d+\.\d KB target <= 10 KB (PASS|MISS); .*",
        r"corral/websockets opens/s: \d+\.\d\dx target >= 1\.2x (PASS|MISS)",
        r"all 1,000 connections open at every reading",
    ],
    "max_idle.py": [
        r"idle connections in one corral process: 2,000 held .*",
        rf"RSS: .* MiB with them: {NUMBER} KB per connection",
        rf"opening: .* server CPU .*: {NUMBER} us per connection .*",
        rf"idle: server CPU .*: {NUMBER} us per connection per second",
        rf"projection to 100,000 per process: RSS {NUMBER} MiB, opening CPU {NUMBER} s, "
        rf"idle CPU {NUMBER}% of a core; needs an open-files limit of {NUMBER}",
        r"all 2,000 connections upgraded and still open at the end",
    ],
    "attack_memory.py": [
        rf"echo\s+(off|on)\s+{NUMBER}(\s+{NUMBER}){{5}}\s+(\S+)\s+(\S+)",
        r"echo\s+(off|on)\s+.*Connection 0, Session 0",
    ],
    "header_memory.py": [
        r"  answers: 431 x 200",
        rf"  RSS at rest {NUMBER} MB; every head answered, .*",
        rf"  server CPU per head: {NUMBER} ms",
    ],
    "timeout_burst.py": [
        r"200 silent connections \(opened in .* s\), idle timeout 3 s: 200 closed by the server .*",
        rf"live client round trip, ms: before worst {NUMBER} p99 {NUMBER} .* during the burst .*",
        rf"server's longest pass, CPU ms: before {NUMBER}, during the burst {NUMBER} .*",
        r"watchdog: \d+ holds logged, longest \d+ ms",
    ],
    "hostile_input.py": [
        rf"\s+\S+\s+fragments: RSS\s+{NUMBER} -> peak\s+{NUMBER} MB .* attackers: closed 1009",
        rf"\s+\S+\s+inflate: RSS\s+{NUMBER} -> peak\s+{NUMBER} MB .* attackers: held",
    ],
    "server_instructions.py": [
        r"1 connection\(s\) x 200 round trips: [\d,]+ instructions",
        r"instructions per round trip: [\d,]+",
    ],
    "asgi_instructions.py": [
        *(
            rf"echo {side}: 1 connection\(s\) x 50 round trips: {NUMBER} instructions each"
            for side in ("without", "with ASGI")
        ),
        r"with/without ASGI, echo instructions: \d+\.\d+x (MET|MISSED) \(target <= 1\.03x\)",
    ],
    "gc_pause.py": [
        "corral" + _CHURN_ROW,
        "websockets" + _CHURN_ROW,
        rf"corral p99 {NUMBER} ms \(p50 {NUMBER}\) target < 50 ms (PASS|MISS); every close .*",
    ],
}


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_quick_run_exits_0_and_prints_its_figures_and_targets(script: str) -> None:
    assert_printed(run_bench(script, "--quick", timeout=580), *EXPECTED[script])
