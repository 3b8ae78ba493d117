"""Install the throwaway plugin distributions in this directory, and run ``sts`` so it sees them.

Each ``sts-<name>/`` here is the source tree of a one-module plugin distribution. ``install``
copies one (a build writes into its source tree) and pip-installs the copy into a private
``site`` directory with ``pip install --target``, offline; ``run_sts`` runs the ``sts``
command in a new process with that directory on ``PYTHONPATH``. A new process is needed
because the test process's package metadata does not know about the new distribution.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

FIXTURES = Path(__file__).parent
STS = Path(sys.executable).with_name("sts")
# Settings of the developer's shell that would change what the child ``sts`` does.
_CLEARED_ENV = ("STS_DISABLE_PLUGINS", "STS_CONFIG")


def install(name: str, work: Path) -> Path:
    """Install the fixture distribution ``name`` (e.g. ``sts-greeting``) into ``work/site``; return it.

    Raises ``AssertionError`` with pip's output when the installation fails.
    """
    source = shutil.copytree(FIXTURES / name, work / "src" / name)
    site = work / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "--quiet", "--target", str(site), str(source)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, f"pip could not install {name}:\n{done.stdout}\n{done.stderr}"
    return site


def run_sts(
    *args: str, site: Path, cwd: Path, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``sts ARGS`` in ``cwd`` in a new process that finds the distributions installed in ``site``."""
    child_env = {key: value for key, value in os.environ.items() if key not in _CLEARED_ENV}
    child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    child_env.update(env or {})
    return subprocess.run(
        [str(STS), *args], cwd=cwd, env=child_env, capture_output=True, text=True, timeout=60, check=False
    )
