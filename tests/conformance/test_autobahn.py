"""The Autobahn conformance gate: wstest's fuzzingclient finds no FAILED case in our echo servers.

Plain synchronous tests (subprocesses, no trio). The per-group figures are printed and saved to
``test-output/autobahn-<target>-<run>.txt``. wstest comes from ``scripts/setup-wstest``; where it
cannot be built (no CPython 2.7), these tests skip and say why, except under ``CI=true``, where
that is a failure: CI must run the gate, not report it skipped.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from .autobahn import (
    COMPRESSION_CASES,
    REPO,
    CaseResult,
    Target,
    describe,
    free_port,
    group_table,
    read_results,
    run_wstest,
    running_server,
    write_spec,
    wstest_unavailable,
)

_BIN = Path(sys.executable).parent
# The servers under test, all in one place. {port} is filled in per run.
BARE_ECHO = Target("bare_echo", (sys.executable, "bench/bare_echo.py", "--port", "{port}"))
CORRAL_ECHO = Target(
    "corral_echo", (str(_BIN / "corral"), "serve", "examples.echo:app", "--port", "{port}")
)
CORRAL_ECHO_COMPRESSED = Target(
    "corral_echo_compressed",
    (str(_BIN / "corral"), "serve", "examples.echo:compressed_app", "--port", "{port}"),
)
FAST_TARGETS = [BARE_ECHO, CORRAL_ECHO]
COMPRESSION_TARGETS = [CORRAL_ECHO_COMPRESSED]

FAST_TIMEOUT = 300.0  # the run takes about 40-60 s: too long for the fast lane
FULL_TIMEOUT = 1800.0  # all 517 cases take about 15 min


def _run_gate(
    target: Target,
    run: str,
    exclude: tuple[str, ...],
    timeout: float,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> list[CaseResult]:
    """Serve target, fuzz it with wstest, print and save the figures, and fail on any FAILED."""
    _require_wstest()
    port = free_port()
    # Two wstest processes share the cases (the compression cases are the slow ones, and
    # wstest, not the server, is the bottleneck): 12.* in one, the rest in the other.
    shares = [
        (tmp_path / "reports-12", ("12.*",), exclude),
        (tmp_path / "reports", ("*",), (*exclude, "12.*")),
    ]
    if "12.*" in exclude:
        shares = [(tmp_path / "reports", ("*",), exclude)]
    specs = [write_spec(out, target.name, port, skip, cases) for out, cases, skip in shares]
    logs = [out.parent / f"{out.name}.wstest.log" for out, _, _ in shares]
    started = time.monotonic()
    with running_server(target.command(port), port, tmp_path / "server.log"):
        run_wstest(specs, logs, timeout)
    elapsed = time.monotonic() - started
    reports = {r.case_id: out for out, _, _ in shares for r in read_results(out, target.name)}
    results = sorted(
        (r for out, _, _ in shares for r in read_results(out, target.name)),
        key=lambda r: tuple(int(n) for n in r.case_id.split(".")),
    )
    figures = (
        f"Autobahn fuzzingclient vs {target.name} ({run}: {len(results)} cases, "
        f"excluded {list(exclude) or 'none'}, {elapsed:.0f} s)\n{group_table(results)}\n"
    )
    _save(f"autobahn-{target.name}-{run}.txt", figures)
    with capsys.disabled():
        print("\n" + figures)
    failures = [describe(reports[r.case_id], r) for r in results if r.fails_gate]
    assert results, f"wstest reported no cases (logs: {logs})"
    assert not failures, (
        f"{len(failures)} Autobahn case(s) failed against {target.name} "
        f"(reports in {sorted(set(map(str, reports.values())))}):\n" + "\n".join(failures)
    )
    return results


def _require_wstest() -> None:
    """Skip, saying why, when wstest cannot run here; under ``CI=true``, fail instead."""
    reason = wstest_unavailable()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"Autobahn conformance cannot run in CI: {reason}", pytrace=False)
    pytest.skip(f"Autobahn conformance not run: {reason}")


def _save(name: str, text: str) -> None:
    """Write text to test-output/name in the repo."""
    out = REPO / "test-output"
    out.mkdir(exist_ok=True)
    (out / name).write_text(text)


@pytest.mark.slow
@pytest.mark.timeout(FAST_TIMEOUT + 60)
@pytest.mark.parametrize("target", FAST_TARGETS, ids=lambda t: t.name)
def test_autobahn_cases_without_compression_all_pass(
    target: Target, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every case but compression (12.*, 13.*) ends with no FAILED/UNCLEAN verdict."""
    _run_gate(target, "fast", COMPRESSION_CASES, FAST_TIMEOUT, tmp_path, capsys)


@pytest.mark.slow
@pytest.mark.compression
@pytest.mark.timeout(FULL_TIMEOUT + 120)
@pytest.mark.parametrize("target", COMPRESSION_TARGETS, ids=lambda t: t.name)
def test_autobahn_all_cases_with_compression_pass(
    target: Target, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """All 517 cases end with no FAILED/UNCLEAN verdict, and permessage-deflate is really on."""
    results = _run_gate(target, "full", (), FULL_TIMEOUT, tmp_path, capsys)
    assert len(results) == 517, f"wstest reported {len(results)} of the 517 cases"
    unimplemented = [r.case_id for r in results if r.behavior == "UNIMPLEMENTED"]
    assert not unimplemented, (
        f"{target.name} did not negotiate permessage-deflate in {len(unimplemented)} case(s): "
        f"{', '.join(unimplemented[:20])}{' ...' if len(unimplemented) > 20 else ''}"
    )


def test_without_wstest_the_gate_skips_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(sys.modules[__name__], "wstest_unavailable", lambda: "no CPython 2.7")
    with pytest.raises(pytest.skip.Exception, match="not run: no CPython 2.7"):
        _require_wstest()


def test_without_wstest_the_gate_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr(sys.modules[__name__], "wstest_unavailable", lambda: "no CPython 2.7")
    with pytest.raises(pytest.fail.Exception, match="cannot run in CI: no CPython 2.7"):
        _require_wstest()
