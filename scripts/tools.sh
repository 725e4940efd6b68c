#!/usr/bin/env bash
# Build pinned tools into a per-version cache and link them into bin/.
#
#   scripts/tools.sh kustomize kubeconform   # just these
#   scripts/tools.sh all                     # every tool the project uses
#
# The cache lives outside the clone (default ~/.cache/yuxi-k8s/tools) so a
# fresh clone on the same machine, such as CI's, rebuilds nothing. Each tool
# lands in <cache>/<name>-<version>/ and is done once its .stamp exists.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../tools/versions.env
source "$here/tools/versions.env"
cache=${YUXI_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/yuxi-k8s}/tools
bin="$here/bin"
mkdir -p "$cache" "$bin"
export CGO_ENABLED=0 GOFLAGS=-trimpath

log() { printf '==> %s\n' "$*" >&2; }

# go_install NAME VERSION PACKAGE: `go install PACKAGE@VERSION` into the cache.
go_install() {
  local name=$1 version=$2 pkg=$3 dir="$cache/$1-$2"
  if [[ ! -f $dir/.stamp ]]; then
    log "building $name $version (go install $pkg@$version)"
    rm -rf "$dir" && mkdir -p "$dir"
    GOBIN="$dir" go install "$pkg@$version"
    touch "$dir/.stamp"
  fi
  link "$dir" "$name"
}

# link DIR NAME...: point bin/NAME at DIR/NAME.
link() {
  local dir=$1; shift
  for n in "$@"; do ln -sfn "$dir/$n" "$bin/$n"; done
}

build_kustomize()   { go_install kustomize "$KUSTOMIZE_VERSION" sigs.k8s.io/kustomize/kustomize/v5; }
build_kubeconform() { go_install kubeconform "$KUBECONFORM_VERSION" github.com/yannh/kubeconform/cmd/kubeconform; }

all_tools=(kustomize kubeconform)

command -v go >/dev/null || { echo "tools.sh: Go is required to build the pinned tools (install golang >= 1.24)" >&2; exit 1; }
targets=("$@")
[[ ${#targets[@]} -eq 0 || ${targets[0]} == all ]] && targets=("${all_tools[@]}")
for t in "${targets[@]}"; do
  declare -F "build_$t" >/dev/null || { echo "tools.sh: unknown tool '$t' (known: ${all_tools[*]})" >&2; exit 2; }
  "build_$t"
done
