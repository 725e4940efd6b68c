#!/usr/bin/env bash
# `make scan`: checkov, an outside scanner, on the rendered staging and prod overlays. Each
# deliberate exception is a `checkov.io/skipN` annotation on the object, with its reason (checkov
# prints the skips). Exit non-zero when checkov reports a failed check.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
export PATH="$here/bin:$here/.venv/bin:$PATH"
out="$here/.run/scan"
mkdir -p "$out"
args=()
for env in staging prod; do
  kubectl kustomize "overlays/$env" >"$out/$env.yaml"
  args+=(-f "$out/$env.yaml")
done
# --skip-download: offline, no guidelines fetched from the vendor's API.
exec checkov "${args[@]}" --framework kubernetes --skip-download --quiet --compact
