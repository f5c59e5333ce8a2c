"""What both the source-tree and the wheel tests check of a feature started without its extra."""

from __future__ import annotations

import subprocess

FEATURE_ARGUMENTS = [
    ("redis", ["--redis", "redis://127.0.0.1:6379"]),
    ("metrics", ["--metrics"]),
    ("json-logs", ["--log-format", "json"]),
]
"""Each extra a ``corral serve`` option needs, and that option."""


def assert_names_the_extra(result: subprocess.CompletedProcess[str], extra: str) -> None:
    """``corral serve`` stopped with status 2 and one line naming ``extra``."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("corral: "), lines
    assert lines[0].endswith(f"needs the {extra} extra: pip install 'corral[{extra}]'"), lines
