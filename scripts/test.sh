#!/usr/bin/env bash
# Set up (first time) and run every test, plus the linter. Extra arguments go to pytest.
# The Redis and RabbitMQ tests start their own redis-server and rabbitmq-server processes on
# loopback and the metrics tests call promtool; ensure-tools.sh installs the Debian packages when
# the machine has none.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
bash scripts/ensure-tools.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
