#!/usr/bin/env bash
# Set up (first time) and run every test, plus the linter. Extra arguments go to pytest.
# The Redis tests start their own redis-server processes on loopback; ensure-redis.sh installs
# the Debian package when the machine has none.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/ensure-redis.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
