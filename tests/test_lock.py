"""Tests requirements.lock against pyproject.toml: every dependency pinned, inside its range."""

from __future__ import annotations

import re

import pytest
from conftest import REPO

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
requirements = pytest.importorskip("packaging.requirements")


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            # exact pins only: anything else would let the registry pick again
            assert re.fullmatch(r"[A-Za-z0-9_.\-]+==[A-Za-z0-9_.+!]+", line), line
            name, version = line.split("==")
            assert normal(name) not in found, f"{name} pinned twice"
            found[normal(name)] = version
    return found


def test_the_lock_pins_every_dependency_inside_pyproject_ranges() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *(r for extra in project["optional-dependencies"].values() for r in extra)]
    locked = pins()
    outside = []
    for text in wanted:
        req = requirements.Requirement(text)
        version = locked.get(normal(req.name))
        assert version is not None, f"{req.name} is in pyproject.toml but not in requirements.lock: run scripts/lock"
        if not req.specifier.contains(version, prereleases=True):
            outside.append(f"{req.name}=={version} is outside {text!r}")
    assert outside == [], "pyproject.toml's ranges moved past the lock: run scripts/lock\n" + "\n".join(outside)
    # the pieces the venv script installs first, and the build tools of the editable install
    assert {"pip", "setuptools", "wheel", "torch", "torchvision", "pytest-xdist"} <= locked.keys()
    assert "inspectr" not in locked  # installed from the checkout, never from the lock
