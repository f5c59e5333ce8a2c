"""Under load: SIGTERM with 1,000 clients (bench/drain.py) and connection churn (bench/soak.py).

Both run the benchmark scripts as they are run by hand and check their verdicts, so the
numbers printed in a failure are the ones bench/README.md describes.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def run_bench(script: str, *args: str, timeout: float) -> str:
    run = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=BENCH.parent,
    )
    return f"exit {run.returncode}\n{run.stdout}\n{run.stderr}"


def failed_checks(output: str) -> list[str]:
    checks = re.findall(r"^(ok  |FAIL) (.+)$", output, re.MULTILINE)
    assert len(checks) == 7, output
    return [name for verdict, name in checks if verdict == "FAIL"]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_sigterm_drains_1000_clients_with_1001_and_exits_0() -> None:
    output = run_bench("drain.py", "--clients", "1000", timeout=200)
    assert output.startswith("exit 0\n"), output
    assert "close codes seen         1001: 1000\n" in output, output
    assert "'closed code=1001' lines 1000\n" in output, output
    assert "warnings/errors logged   0\n" in output, output
    assert "\nPASS\n" in output, output


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_soak_of_the_echo_example_holds_rss_tasks_and_actors_steady() -> None:
    """20 s of churn against the echo example as shipped: every check of bench/soak.py holds."""
    output = run_bench("soak.py", "--duration", "20", timeout=150)
    assert failed_checks(output) == [], output
    assert output.startswith("exit 0\n"), output
