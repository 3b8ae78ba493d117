"""The ``sts`` entry points installed in this environment are the ones the plugins' pyproject.toml
declare. Editable installs keep the entry points of the last ``pip install``: after one changes
(a module replaced by a plugin class, say), the stale one would load a module without hooks."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECTS = sorted(ROOT.glob("plugins/*/pyproject.toml"))


@pytest.mark.parametrize("pyproject", PYPROJECTS, ids=[path.parent.name for path in PYPROJECTS])
def test_the_installed_entry_points_are_those_pyproject_declares(pyproject: Path) -> None:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    declared = project.get("entry-points", {}).get("sts", {})
    try:
        installed = {ep.name: ep.value for ep in metadata.distribution(project["name"]).entry_points
                     if ep.group == "sts"}
    except metadata.PackageNotFoundError:
        pytest.skip(f"{project['name']} is not installed")
    assert installed == declared, (
        f"{project['name']}: the installed entry points are stale; run "
        f"pip install -r requirements-dev.txt (or pip install -e {pyproject.parent.relative_to(ROOT)})"
    )
