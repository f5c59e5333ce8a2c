"""Run Autobahn's fuzzingclient (wstest) against a WebSocket server and tally its verdicts.

The pieces are plain functions so each can be read and checked on its own: pick a port, start the
server under test, write the spec, run wstest, parse ``index.json``, count per case group, and name
the cases that fail the gate. ``scripts/setup-wstest`` builds the wstest this module runs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WSTEST = REPO / ".venv-wstest" / "bin" / "wstest"
WSTEST_UNAVAILABLE = REPO / ".venv-wstest" / "UNAVAILABLE"
"""Written by ``scripts/setup-wstest`` when CPython 2.7 cannot be had: the reason, in a line."""
COMPRESSION_CASES = ("12.*", "13.*")

BEHAVIORS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")
CLOSE_BEHAVIORS = ("OK", "INFORMATIONAL", "FAILED", "UNCLEAN")
# Verdicts that fail the gate. NON-STRICT passes: it varies with timing. Autobahn's other close
# verdicts ("WRONG CODE", "FAILED BY CLIENT") are failures too, and so is any label we don't know.
PASSING_BEHAVIORS = frozenset({"OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED"})
PASSING_CLOSE_BEHAVIORS = frozenset({"OK", "INFORMATIONAL", "NON-STRICT"})


class ServerDidNotStart(RuntimeError):
    """The server under test exited, or never accepted a connection, before its deadline."""


class WstestFailed(RuntimeError):
    """wstest timed out, exited non-zero, or wrote no report."""


@dataclass(frozen=True)
class CaseResult:
    """Autobahn's verdict on one case, as ``index.json`` records it."""

    case_id: str
    behavior: str
    behavior_close: str
    report_file: str

    @property
    def group(self) -> int:
        """The case's group: the first number of its id (``"5.19"`` is in group 5)."""
        return int(self.case_id.split(".", 1)[0])

    @property
    def fails_gate(self) -> bool:
        """True when either verdict is a failure (see PASSING_BEHAVIORS and its close twin)."""
        return (
            self.behavior not in PASSING_BEHAVIORS
            or self.behavior_close not in PASSING_CLOSE_BEHAVIORS
        )


@dataclass(frozen=True)
class Target:
    """A server to test: its command line (``{port}`` stands for the port)."""

    name: str
    argv: tuple[str, ...]

    def command(self, port: int) -> list[str]:
        """The command line that serves this target on port."""
        return [arg.replace("{port}", str(port)) for arg in self.argv]


def wstest_unavailable() -> str | None:
    """Why wstest cannot run here (``scripts/setup-wstest``'s own words), or None when it can."""
    if WSTEST.exists():
        return None
    if WSTEST_UNAVAILABLE.exists():
        return " ".join(WSTEST_UNAVAILABLE.read_text().split())
    return f"{WSTEST} is missing: run scripts/setup-wstest (./dev test does)"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """End proc's whole process group: SIGTERM, up to ``timeout`` s of grace, then SIGKILL; reap."""
    _signal_group(proc, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    _signal_group(proc, signal.SIGKILL)  # the leader if it lingers, and any children it left
    proc.wait(timeout)


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Send sig to proc's process group (proc was started in a session of its own)."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass  # the group is already gone


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file, or a note that it is empty or missing."""
    try:
        text = path.read_text(errors="replace").rstrip()
    except FileNotFoundError:
        return f"({path} was not written)"
    return "\n".join(text.splitlines()[-lines:]) if text else f"({path} is empty)"


def _wait_until_accepting(
    proc: subprocess.Popen[bytes], port: int, log: Path, timeout: float
) -> None:
    """Poll 127.0.0.1:port until it accepts; raise ServerDidNotStart if proc exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerDidNotStart(f"server exited with {proc.returncode}:\n{tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.05)
    raise ServerDidNotStart(
        f"server did not accept on port {port} within {timeout} s:\n{tail(log)}"
    )


@contextmanager
def running_server(
    argv: Sequence[str], port: int, log: Path, start_timeout: float = 20.0
) -> Iterator[subprocess.Popen[bytes]]:
    """Run argv from the repo root (output to ``log``) until it accepts on port; stop it on exit."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            list(argv),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_until_accepting(proc, port, log, start_timeout)
        yield proc
    finally:
        stop(proc)


def write_spec(
    outdir: Path, agent: str, port: int, exclude: Iterable[str], cases: Iterable[str] = ("*",)
) -> Path:
    """Write a fuzzingclient spec: ``cases`` but ``exclude``, against ws://127.0.0.1:port."""
    spec = {
        "outdir": str(outdir),
        "servers": [{"agent": agent, "url": f"ws://127.0.0.1:{port}"}],
        "cases": list(cases),
        "exclude-cases": list(exclude),
        "exclude-agent-cases": {},
    }
    path = outdir.parent / f"{outdir.name}.spec.json"
    outdir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec, indent=2))
    return path


def run_wstest(specs: Sequence[Path], logs: Sequence[Path], timeout: float) -> None:
    """Run ``wstest -m fuzzingclient`` once per spec, all at once (each spec a share of the
    cases: the run lasts as long as its longest share); output to ``logs``; kill them all
    after ``timeout`` s."""
    if not WSTEST.exists():
        raise WstestFailed(f"{WSTEST} is missing: run scripts/setup-wstest (./dev test does)")
    runs: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for spec, log in zip(specs, logs, strict=True):
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [str(WSTEST), "-m", "fuzzingclient", "-s", str(spec)],
                    cwd=spec.parent,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            runs.append((proc, log))
        deadline = time.monotonic() + timeout
        for proc, log in runs:
            try:
                code = proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise WstestFailed(
                    f"wstest still running after {timeout} s:\n{tail(log)}"
                ) from None
            if code != 0:
                raise WstestFailed(f"wstest exited with {code}:\n{tail(log)}")
    finally:
        for proc, _ in runs:
            stop(proc)


def read_results(outdir: Path, agent: str) -> list[CaseResult]:
    """Parse the agent's verdicts from ``outdir/index.json``, sorted by case id."""
    index = outdir / "index.json"
    if not index.exists():
        raise WstestFailed(f"wstest wrote no {index}")
    cases = json.loads(index.read_text())[agent]
    results = [
        CaseResult(case_id, c["behavior"], c["behaviorClose"], c["reportfile"])
        for case_id, c in cases.items()
    ]
    return sorted(results, key=lambda r: tuple(int(n) for n in r.case_id.split(".")))


def describe(outdir: Path, result: CaseResult) -> str:
    """One line naming a case, its verdicts and Autobahn's description of it."""
    try:
        report = json.loads((outdir / result.report_file).read_text())
        what = " ".join(str(report.get("description", "")).split())
        detail = f"{report.get('result', '')} / {report.get('resultClose', '')}"
    except (OSError, ValueError) as exc:
        what, detail = f"(no readable report: {exc})", ""
    return (
        f"{result.case_id}: behavior {result.behavior}, close {result.behavior_close}"
        f" ({detail}) -- {what[:300]}"
    )


def group_table(results: Sequence[CaseResult]) -> str:
    """A fixed-width table of verdict counts per case group, with a total row."""
    header = ["group", "cases", *BEHAVIORS, "|", *(f"close {b}" for b in CLOSE_BEHAVIORS), "other"]
    rows = [header]
    for group in sorted({r.group for r in results}):
        rows.append(_count_row(str(group), [r for r in results if r.group == group]))
    rows.append(_count_row("total", results))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    )


def _count_row(label: str, results: Sequence[CaseResult]) -> list[str]:
    """One table row: case count, behavior counts, close counts, then unlisted labels."""
    behaviors = Counter(r.behavior for r in results)
    closes = Counter(r.behavior_close for r in results)
    other = sum(n for b, n in behaviors.items() if b not in BEHAVIORS)
    other += sum(n for b, n in closes.items() if b not in CLOSE_BEHAVIORS)
    return [
        label,
        str(len(results)),
        *(str(behaviors[b]) for b in BEHAVIORS),
        "|",
        *(str(closes[b]) for b in CLOSE_BEHAVIORS),
        str(other),
    ]
