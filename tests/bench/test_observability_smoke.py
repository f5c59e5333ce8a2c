"""``echo_throughput.py --observability --quick``: corral against itself with metrics and the
watchdog off (twice, the noise floor), the watchdog on, and both on (``/metrics`` scraped
meanwhile) exits 0 and prints its rows and ratios. No timing checked."""

from __future__ import annotations

import pytest

from .kit import NUMBER, assert_printed, run_bench

VARIANTS = ("corral-off", "corral-watchdog", "corral-metrics")
CONTROL = "corral-off-again"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_observability_run_prints_each_variant_and_its_ratio_to_off() -> None:
    run = run_bench(
        "echo_throughput.py", "--observability", "--quick", "--seconds", "1", timeout=280
    )
    assert_printed(
        run,
        *(rf"{n}\s+{v}\s+{NUMBER}\s+\d+\.\d\s+\d+%" for n in (1, 50) for v in (*VARIANTS, CONTROL)),
        *(
            rf"{n} conns: {CONTROL}/corral-off rt/s \d+\.\d{{3}}x \(.*\); server CPU/rt "
            rf"\d+\.\d{{3}}x: the same server twice, this run's noise floor"
            for n in (1, 50)
        ),
        *(
            rf"{n} conns: {v}/corral-off rt/s \d+\.\d{{3}}x .* target >= 0\.97x (PASS|MISS); "
            rf"server CPU/rt \d+\.\d{{3}}x"
            for n in (1, 50)
            for v in VARIANTS[1:]
        ),
    )
