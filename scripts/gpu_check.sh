#!/usr/bin/env bash
# One prepared GPU check for a lent GPU (~10 min): see scripts/bench/gpu_check.py for the sections.
#   bash scripts/gpu_check.sh            # run (needs CUDA); prints one table, writes a JSON
#   bash scripts/gpu_check.sh --dry-run  # print what would run
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 scripts/bench/gpu_check.py "$@"
