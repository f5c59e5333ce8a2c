"""The README's examples run as they stand: its "Testing your handlers" file is a test file."""

from __future__ import annotations

import importlib
import os
import re
import sys
from pathlib import Path

import pytest
import trio

ROOT = Path(__file__).resolve().parents[1]


def first_python_block(section: str) -> str:
    """The first ```python block after the README heading ``## {section}``."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index(f"\n## {section}\n")
    block = re.search(r"```python\n(.*?)```", readme[start:], re.DOTALL)
    assert block is not None, f"no python block under {section!r}"
    return block.group(1)


async def test_the_testing_section_opens_with_a_test_file_that_passes(tmp_path: Path) -> None:
    test_file = tmp_path / "test_seed.py"
    test_file.write_text(first_python_block("Testing your handlers"))
    with trio.fail_after(60):
        result = await trio.run_process(
            [sys.executable, "-m", "pytest", str(test_file), "-q", "-p", "no:cacheprovider"],
            cwd=tmp_path,  # the file stands alone: none of the project's conftest or settings
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    output = result.stdout.decode() + result.stderr.decode()
    assert result.returncode == 0, output
    assert re.search(r"\b5 passed\b", output), output


def stable_names(package: str) -> set[str]:
    """The names the README's "Stable names" section lists under ``### `package` ``."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("\n## Stable names\n") :]
    section = section[: section.index("\n## ", 1)]
    heading = f"\n### `{package}`\n"
    start = section.index(heading) + len(heading)
    end = section.find("\n### ", start)
    return set(re.findall(r"`(\w+)`", section[start : end if end != -1 else None]))


@pytest.mark.parametrize("package", ["actors", "server", "server.testing"])
def test_each_packages_all_is_the_readmes_list_of_stable_names(package: str) -> None:
    module = importlib.import_module(package)
    exported = set(module.__all__)
    assert len(exported) == len(module.__all__), "a name is listed twice in __all__"
    listed = stable_names(package)
    assert exported == listed, (
        f"in __all__, not in the README: {sorted(exported - listed)}; "
        f"in the README, not in __all__: {sorted(listed - exported)}"
    )
    assert all(hasattr(module, name) for name in exported)
