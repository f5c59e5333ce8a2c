"""The embedded default loads no optional library, and a feature whose extra is missing stops
``corral serve`` at start-up with one line naming the extra (exit 2).

Each case runs in a subprocess where the libraries are hidden (``sys.modules[name] = None``, so
importing one raises ``ModuleNotFoundError`` as if it were not installed). The real check, on
an installed wheel without the extras, is ``test_wheel``.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from .cases import FEATURE_ARGUMENTS, assert_names_the_extra

ROOT = Path(__file__).resolve().parents[2]

OPTIONAL = {
    "redis": ("coredis", "anyio"),
    "metrics": ("prometheus_client",),
    "json-logs": ("pythonjsonlogger",),
    "test": ("trio_websocket",),
    "tokens": ("jwt",),
    "client": ("trio_websocket",),
}
"""Each extra and the top-level modules it installs (as pyproject.toml lists them)."""
EVERY_OPTIONAL = tuple(module for modules in OPTIONAL.values() for module in modules)


def run_hiding(modules: tuple[str, ...], code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (in the source tree) with ``modules`` hidden."""
    hide = "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in modules)
    return subprocess.run(
        [sys.executable, "-c", hide + code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_embedded_default_imports_no_optional_library() -> None:
    loaded = run_hiding(
        (),
        "import actors, server, server.run.cli, examples.seed\n"
        f"print(sorted(set({EVERY_OPTIONAL!r}) & set(sys.modules)))",
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]"


def test_pyproject_declares_each_extra_and_all_of_them_in_all() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert set(OPTIONAL) <= set(extras), extras
    assert extras["all"] == [f"corral[{','.join(OPTIONAL)}]"]


@pytest.mark.parametrize(("extra", "arguments"), FEATURE_ARGUMENTS)
def test_a_feature_without_its_extra_stops_the_start_with_one_line(
    extra: str, arguments: list[str]
) -> None:
    argv = ["serve", "examples.seed:app", "--port", "0", *arguments]
    result = run_hiding(
        OPTIONAL[extra], f"from server.run.cli import main\nsys.exit(main({argv!r}))"
    )
    assert_names_the_extra(result, extra)


@pytest.mark.parametrize(
    ("extra", "module", "feature"),
    [
        ("test", "server.testing", "the test kit (server.testing)"),
        ("tokens", "server.tokens", "signed tokens (server.tokens)"),
        ("client", "server.topics.client", "the topic client (server.topics.client)"),
        ("redis", "actors.topics_redis", "topics on Redis"),
    ],
)
def test_a_module_without_its_extra_says_which_to_install(
    extra: str, module: str, feature: str
) -> None:
    result = run_hiding(OPTIONAL[extra], f"import {module}")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"actors.extras.MissingExtra: {feature} needs the {extra} extra: "
        f"pip install 'corral[{extra}]'"
    )


def test_the_version_comes_from_the_installed_metadata() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "server.run.cli", "--version"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"corral {importlib.metadata.version('corral')}\n"
