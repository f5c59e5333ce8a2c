"""Running a benchmark script, or loading it as a module for tests of its pure parts."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[2] / "bench"
NUMBER = r"[\d,]+(?:\.\d+)?"
"""A figure as the benches print it: 12,345 or 12.5."""


def run_bench(script: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``bench/<script>`` with ``args`` in this interpreter; output captured as text."""
    return subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def load_bench(path: Path) -> ModuleType:
    """Import ``bench/<name>.py`` (bench/ is on the path for its sibling imports)."""
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_printed(run: subprocess.CompletedProcess[str], *lines: str) -> None:
    """The run exited 0 and printed a line matching each regular expression (whole line)."""
    assert run.returncode == 0, run.stdout + run.stderr
    for line in lines:
        assert re.search(rf"^{line}$", run.stdout, re.MULTILINE), (
            f"no line {line!r} in\n{run.stdout}"
        )
