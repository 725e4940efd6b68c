#!/usr/bin/env bash
# The local single-node cluster: scripts/cluster.sh up|down|status
#
#   up      build the pinned binaries if needed, install the Debian packages it
#           needs, clean what a killed earlier run left, start every component
#           and wait until the node is Ready and cluster DNS answers
#   down    stop every process by pid and remove mounts, iptables chains,
#           ipsets, the bridge and all state under /var/lib/yuxi-k8s
#   status  what runs, node Ready, DNS (exit 0 only when all are fine)
#
# Root on Linux. Kubeconfig: /var/lib/yuxi-k8s/admin.kubeconfig.
# Logs of the current run: /var/lib/yuxi-k8s/logs/<component>.log
# (copied to ~/.cache/yuxi-k8s/last-cluster-logs by `down`). See docs/cluster.md.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
action=${1:-}
case $action in
  up|down|status) ;;
  *) echo "usage: scripts/cluster.sh up|down|status" >&2; exit 2 ;;
esac
[[ $(uname -s) == Linux ]] || { echo "cluster.sh: the local cluster needs Linux (use kind or an existing cluster)" >&2; exit 1; }
[[ $(id -u) == 0 ]] || { echo "cluster.sh: the local cluster needs root" >&2; exit 1; }
[[ -x $here/.venv/bin/yuxi-k8s ]] || "$here/scripts/venv.sh"
if [[ $action == up ]]; then
  # The binaries the local provider needs, named once (LocalProvider.tools).
  read -ra tools < <("$here/.venv/bin/python" -c \
    'from yuxi_k8s.cluster.providers.local import LocalProvider; print(*LocalProvider.tools)')
  "$here/scripts/tools.sh" "${tools[@]}"
fi
exec "$here/.venv/bin/yuxi-k8s" cluster "$action"
