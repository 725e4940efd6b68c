#!/usr/bin/env bash
# make bench: run every benchmarks/bench_*.py (or one: scripts/bench.sh validate).
# Each prints its figures as ratios against a baseline measured in the same run;
# BENCHMARKS.md records the results and the command that produced them.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
export PATH="$here/bin:$here/.venv/bin:$PATH"
scripts/services.sh up
# shellcheck disable=SC1091
source .run/services.env
only=${1:-}
for f in benchmarks/bench_*.py; do
  name=$(basename "$f" .py); name=${name#bench_}
  [[ -z $only || $only == "$name" ]] || continue
  printf '\n==> benchmark: %s\n' "$name"
  python "$f"
done
