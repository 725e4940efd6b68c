#!/usr/bin/env bash
# The README's test command runs this: the venv, the validator's pinned kubeconform, the pinned
# checkov (tests/static/test_checkov.py) and the dev secrets, then pytest. Extra arguments go to
# pytest (e.g. -m static, tests/static, -k lock, --keep-cluster) and then that is all it runs.
#
# Nothing else is set up here: pytest decides what the collected tests need. Tests marked db get
# the loopback PostgreSQL and Redis (tests/services_fixtures.py), tests that ask for kube_cluster
# get the pinned Kubernetes binaries built and a cluster started (tests/kube_fixtures.py); a run
# that collects none of them starts no service and builds no cluster binary.
#
# Without arguments (make test): every tier on the cluster the provider rules choose (docs/cluster.md),
# then, when that was not kind, the kind pass: the cluster smoke tests and the core end-to-end
# scenarios again on a kind cluster (marker `core`, and `kind` for what only kind has), so both
# ways to a cluster are proven by one command.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
export PATH="$here/bin:$here/.venv/bin:$PATH"

make --no-print-directory -j4 venv tools-validate tools-scan dev-secrets  # side by side, as make validate
if [[ $# -gt 0 ]]; then
  exec python -m pytest "$@"
fi
provider=$(python -m yuxi_k8s.cluster.providers 2>/dev/null || echo unknown)
status=0
python -m pytest -m "not kind" || status=$?
if [[ $provider == local ]]; then
  echo "==> the kind pass: cluster smoke tests and core end-to-end scenarios on kind" >&2
  YUXI_K8S_CLUSTER_PROVIDER=kind python -m pytest -m "cluster and (core or kind)" tests/cluster tests/e2e || status=$?
else
  echo "==> no separate kind pass: the cluster of the run above was '$provider'" >&2
fi
exit $status
