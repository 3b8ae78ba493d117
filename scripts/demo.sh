#!/usr/bin/env bash
# Set up (first time: STS and its plugins only, no test tools) and run the demo:
# configs/task.yaml on the memory backend. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh run
exec .venv/bin/sts run configs/task.yaml "$@"
