#!/usr/bin/env bash
# Cold `make validate` from a fresh clone with every cache empty (BENCHMARKS.md, "Cold make validate").
#
#   benchmarks/cold_validate.sh [-n RUNS] REV...     e.g. benchmarks/cold_validate.sh -n 3 6492d97 HEAD
#
# For each of RUNS rounds, and each REV in turn within a round (so the revisions being compared share
# the machine's load of those minutes): clone this repository into a temp folder, check out REV, and
# time `make validate` with the kit's, pip's, uv's and Go's build and module caches pointed at empty
# temp folders. Prints one line per run and the median per REV; removes what it made.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
runs=3
if [[ ${1:-} == -n ]]; then runs=$2; shift 2; fi
[[ $# -gt 0 ]] || { echo "usage: $0 [-n RUNS] REV..." >&2; exit 2; }
declare -A times
for ((i = 1; i <= runs; i++)); do
  for rev in "$@"; do
    tmp=$(mktemp -d /tmp/cold-validate.XXXXXX)
    git clone --quiet "$here" "$tmp/clone"
    git -C "$tmp/clone" checkout --quiet "$(git -C "$here" rev-parse "$rev")"
    start=$(date +%s.%N)
    # CPU seconds (user + sys of make and everything it ran) say what an idle machine would need.
    env -u YUXI_K8S_CACHE XDG_CACHE_HOME="$tmp/cache" GOCACHE="$tmp/gocache" GOMODCACHE="$tmp/gomod" \
      PIP_CACHE_DIR="$tmp/pip" UV_CACHE_DIR="$tmp/uv" /usr/bin/time -f '%U %S' -o "$tmp.cpu" \
      make -C "$tmp/clone" --no-print-directory validate >"$tmp.log" 2>&1 ||
      { tail -n 20 "$tmp.log" >&2; echo "cold_validate: make validate failed at $rev (log $tmp.log)" >&2; exit 1; }
    t=$(echo "$(date +%s.%N) - $start" | bc)
    cpu=$(awk '{print $1 + $2}' "$tmp.cpu")
    printf 'run %d  %-12s %6.1f s  cpu %5.1f s  (load %s)\n' "$i" "$rev" "$t" "$cpu" "$(cut -d' ' -f1-3 /proc/loadavg)"
    times[$rev]+="$t "
    rm -rf "$tmp" "$tmp.log" "$tmp.cpu"
  done
done
for rev in "$@"; do
  # shellcheck disable=SC2086
  printf 'median %-12s %6.1f s  of: %s\n' "$rev" "$(printf '%s\n' ${times[$rev]} | sort -n | sed -n "$(((runs + 1) / 2))p")" "${times[$rev]}"
done
