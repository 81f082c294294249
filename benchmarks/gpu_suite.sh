#!/usr/bin/env bash
# The GPU suite (benchmarks/gpu_suite.py) with a hard 8-minute limit; one JSON out.
#   bash benchmarks/gpu_suite.sh                      # on a GPU machine: results in benchmarks/results/gpu_suite.json
#   bash benchmarks/gpu_suite.sh --device cpu --quick # the CPU dry run (every part, tiny sizes)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${GPU_SUITE_JSON:-benchmarks/results/gpu_suite.json}"
exec timeout 480 python benchmarks/gpu_suite.py --json "$OUT" "$@"
