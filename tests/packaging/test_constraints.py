"""constraints.txt keeps CI reproducible: every dependency that pyproject.toml or the examples
declare has its exact version there, and that version lies inside the declared range."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def declared() -> list[Requirement]:
    """Every requirement of corral, its extras (less the ones naming corral) and the examples."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = [*project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        lines += extra
    lines += (ROOT / "examples" / "requirements.txt").read_text().splitlines()
    requirements = [Requirement(line.split("#")[0]) for line in lines if line.split("#")[0].strip()]
    return [requirement for requirement in requirements if requirement.name != "corral"]


def pinned() -> dict[str, Version]:
    """constraints.txt as {canonical name: version}, each line an exact ``==`` pin."""
    pins: dict[str, Version] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, separator, version = line.partition("==")
            assert separator, f"not an exact pin: {line!r}"
            pins[canonicalize_name(name)] = Version(version)
    return pins


def test_every_declared_dependency_is_pinned_inside_its_range() -> None:
    pins = pinned()
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is declared but not in constraints.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {requirement.name}=={pins[name]}, outside {requirement}"
        )
