"""The built wheel, not the source tree: installed into a fresh venv with only the embedded
default it serves the seed example and names each extra it lacks; installed with every extra
beside FastAPI and Django it resolves, checks and imports.

These build and install for real (pip's cache, and the package index when the cache lacks a
release), so they are slow: about a minute each.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from server import Text
from server.testing import open_client

from ..server.corral_process import corral_serve
from .cases import FEATURE_ARGUMENTS, assert_names_the_extra

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = ROOT / "constraints.txt"
INSTALL_TIMEOUT = 300.0

# Network installs on a loaded machine can pass the suite's 120 s default; each stays well
# under it on a quiet one (the slowest, FastAPI and Django, about 70 s).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(INSTALL_TIMEOUT)]


def run(*command: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run ``command`` to its end, its output captured."""
    return subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
    )


def make_venv(path: Path, *requirements: str, constraints: Path | None = None) -> Path:
    """A fresh venv at ``path`` with ``requirements`` installed; its ``bin`` directory."""
    assert run(sys.executable, "-m", "venv", path).returncode == 0
    pip: list[str | Path] = [path / "bin" / "python", "-m", "pip", "install", "--quiet"]
    if constraints is not None:
        pip += ["-c", constraints]
    installed = run(*pip, *requirements)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return path / "bin"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """corral's wheel, built once for this module from a copy of what it is made of (so no
    earlier build's leftovers in the source tree can slip into it, and none is left there)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in ("actors", "server"):
        shutil.copytree(
            ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    out = tmp_path_factory.mktemp("wheel")
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", out, source)
    assert built.returncode == 0, built.stdout + built.stderr
    (path,) = out.glob("corral-*.whl")
    return path


def test_the_wheel_holds_the_packages_and_their_data_and_nothing_else(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.startswith("corral-")}
    assert tops == {"actors", "server"}, tops
    assert {
        "actors/py.typed",
        "server/py.typed",
        "server/ops/dashboard/static/dashboard.html",
    } <= set(names)


async def test_the_wheel_alone_serves_the_seed_example_and_names_each_missing_extra(
    wheel: Path, tmp_path: Path
) -> None:
    bin_ = make_venv(tmp_path / "venv", str(wheel), constraints=CONSTRAINTS)
    frozen = run(bin_ / "python", "-m", "pip", "freeze").stdout.lower()
    for optional in ("coredis", "anyio", "prometheus", "json-logger", "trio-websocket", "regex"):
        assert optional not in frozen, frozen
    app_dir = tmp_path / "app"  # the seed example alone: no source tree on the path
    app_dir.mkdir()
    shutil.copy(ROOT / "examples" / "seed.py", app_dir / "seed_app.py")
    where = run(bin_ / "python", "-c", "import server; print(server.__file__)", cwd=app_dir)
    assert Path(where.stdout.strip()).is_relative_to(tmp_path / "venv"), where

    async with corral_serve(tmp_path, "seed_app:app", script=bin_ / "corral", cwd=app_dir) as (
        corral
    ):
        async with open_client(f"ws://127.0.0.1:{corral.port}/") as client:
            assert await client.receive() == Text("Hello!")

    for extra, arguments in FEATURE_ARGUMENTS:
        refused = run(
            bin_ / "corral", "serve", "seed_app:app", "--port", "0", *arguments, cwd=app_dir
        )
        assert_names_the_extra(refused, extra)
    version = run(bin_ / "corral", "--version", cwd=app_dir)
    assert version.stdout == f"corral {wheel.name.split('-')[1]}\n", version


def test_the_wheel_with_every_extra_installs_beside_fastapi_and_django(
    wheel: Path, tmp_path: Path
) -> None:
    # No constraints: the releases a team adding corral to its application would get today.
    requirements = [f"corral[all] @ {wheel.as_uri()}", "fastapi", "uvicorn", "django"]
    bin_ = make_venv(tmp_path / "venv", *requirements)
    checked = run(bin_ / "python", "-m", "pip", "check")
    assert checked.returncode == 0, checked.stdout
    imported = run(
        bin_ / "python",
        "-c",
        "import fastapi, uvicorn, django, starlette\n"
        "import actors, server, server.run.cli, server.testing, server.ops.metrics\n"
        "import actors.backend_redis\n"
        "from server.ops.log_format import formatter; formatter('json')",
        cwd=tmp_path,
    )
    assert imported.returncode == 0, imported.stderr
