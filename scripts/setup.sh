#!/usr/bin/env bash
# Create .venv (if missing) and install into it what is needed, one line per step:
#   setup.sh       STS and every plugin in editable mode (requirements.txt): what running needs
#   setup.sh dev   the same plus the test and lint tools (requirements-dev.txt)
# Safe to run again: it installs only when the requirements or a pyproject.toml changed, or when
# the tools are wanted and only the runtime was installed. setuptools' "Editable installation"
# warning boxes are hidden; pip's errors are not.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
level="${1:-run}"
case "$level" in
    run) requirements=requirements.txt what="STS and its plugins" ;;
    dev) requirements=requirements-dev.txt what="STS, its plugins and the test tools" ;;
    *) echo "usage: scripts/setup.sh [run|dev]" >&2; exit 2 ;;
esac
"$PYTHON" - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"STS needs Python 3.11 or newer; {sys.executable} is {sys.version.split()[0]} (set PYTHON=...)")
PY
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    "$PYTHON" -m venv .venv
fi
# The stamp says what was installed: "<run|dev> <hash of the requirements and pyproject.toml files>".
# A dev install serves the demo too; a run install does not serve the tests.
stamp=.venv/.sts-installed
wanted=$(cat requirements.txt requirements-dev.txt pyproject.toml plugins/*/pyproject.toml | sha256sum | cut -d' ' -f1)
have_level="" have_hash=""
if [ -f "$stamp" ]; then
    read -r have_level have_hash <"$stamp" || true
fi
if [ "$have_hash" = "$wanted" ] && { [ "$have_level" = dev ] || [ "$level" = run ]; }; then
    exit 0
fi
if [ "$have_hash" = "$wanted" ]; then
    echo "setup: installing the test tools (pytest, ruff, schemathesis)"
elif [ -f "$stamp" ]; then
    echo "setup: installing $what (the requirements changed)"
else
    echo "setup: installing $what (first run, ~1 min)"
fi
# The build backend runs in pip's subprocesses, which inherit PYTHONWARNINGS.
export PYTHONWARNINGS="ignore:Editable installation${PYTHONWARNINGS:+,$PYTHONWARNINGS}"
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$requirements"
echo "$level $wanted" >"$stamp"
