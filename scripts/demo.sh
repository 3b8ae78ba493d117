#!/usr/bin/env bash
# Set up (first time) and run the demo: configs/task.yaml on the memory backend. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/sts run configs/task.yaml "$@"
