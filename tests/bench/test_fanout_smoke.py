"""The fan-out benchmark runs end to end, prints its figures and loses nothing (no timing)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from .kit import load_bench

BENCH = Path(__file__).resolve().parents[2] / "bench" / "fanout.py"
ROW = (
    r"^{label}\s+{server}\s+(?P<got>[\d,]+)/(?P<expected>[\d,]+)\s+[\d,]+"
    r"\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+$"
)


def _load_bench() -> ModuleType:
    return load_bench(BENCH)


@pytest.mark.slow
def test_quick_run_prints_every_server_both_targets_and_zero_losses() -> None:
    run = subprocess.run(
        [sys.executable, str(BENCH), "--quick"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    for server in ("corral", "cowboy", "websockets", "naive"):
        for label in ("1", "median"):
            row = re.search(ROW.format(label=label, server=server), run.stdout, re.MULTILINE)
            assert row, run.stdout
            assert row["got"] == row["expected"] == "4,000", run.stdout
    for server, target in (("corral", "2.0"), ("cowboy", "1.0")):
        assert re.search(
            rf"^{server}/websockets deliveries/s \(median\): \d+\.\d\dx  "
            rf"target >= {target}x  (PASS|MISS); per server CPU-second \d+\.\d\dx$",
            run.stdout,
            re.MULTILINE,
        ), run.stdout
    assert re.search(
        r"^delivered: every message to every connection, in order: corral 4,000/4,000, "
        r"cowboy 4,000/4,000, websockets 4,000/4,000, naive 4,000/4,000; 0 lost$",
        run.stdout,
        re.MULTILINE,
    ), run.stdout


def _round(bench: ModuleType, delivered: int, complete: int) -> object:
    return bench.Round("corral", delivered, 40, complete, 1.0, 1.0, 1.0, 0.1, 0.1)


def test_a_lost_delivery_fails_the_run() -> None:
    bench = _load_bench()
    sizes = bench.Sizes(connections=2, messages=20, rounds=1, processes=1)
    results = {"corral": [_round(bench, 39, 1)], "naive": [_round(bench, 40, 2)]}
    with pytest.raises(bench.LostDelivery, match="corral: 1 of 40 deliveries lost, 1 of 2"):
        bench.check_deliveries(results, sizes)


def test_an_out_of_order_delivery_fails_the_run() -> None:
    bench = _load_bench()
    sizes = bench.Sizes(connections=2, messages=20, rounds=1, processes=1)
    results = {"corral": [_round(bench, 40, 1)], "naive": [_round(bench, 40, 2)]}
    with pytest.raises(bench.LostDelivery, match="0 of 40 deliveries lost, 1 of 2 connections"):
        bench.check_deliveries(results, sizes)


def test_server_frames_are_split_whole_and_pings_are_not_counted() -> None:
    split_frames = load_bench(BENCH.parent / "wsclient.py").split_frames

    long = b"y" * 300
    buffer = bytearray(b"\x81\x02hi" + b"\x89\x00" + b"\x81\x7e\x01\x2c" + long + b"\x81\x05ab")
    assert split_frames(buffer) == [b"hi", long]
    assert buffer == bytearray(b"\x81\x05ab")  # incomplete: kept for the next read
