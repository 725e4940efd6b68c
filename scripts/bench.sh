#!/usr/bin/env bash
# make bench: run every benchmarks/bench_*.py (or one: scripts/bench.sh validate).
# Each prints its figures as ratios against a baseline measured in the same run;
# BENCHMARKS.md records the results and the command that produced them. Each sets up
# what it needs (bench_state starts the loopback services through yuxi_k8s.devservices).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
export PATH="$here/bin:$here/.venv/bin:$PATH"
only=${1:-}
for f in benchmarks/bench_*.py; do
  name=$(basename "$f" .py); name=${name#bench_}
  [[ -z $only || $only == "$name" ]] || continue
  printf '\n==> benchmark: %s\n' "$name"
  python "$f"
done
