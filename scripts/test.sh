#!/usr/bin/env bash
# The README's test command runs this: the venv, the validator's pinned kubeconform, the pinned
# checkov (tests/static/test_checkov.py) and the dev secrets, then pytest. Extra arguments go to
# pytest (e.g. -m static, tests/static, -k lock, --keep-cluster).
#
# Nothing else is set up here: pytest decides what the collected tests need. Tests marked db get
# the loopback PostgreSQL and Redis (tests/services_fixtures.py), tests that ask for kube_cluster
# get the pinned Kubernetes binaries built and a cluster started (tests/kube_fixtures.py); a run
# that collects none of them starts no service and builds no cluster binary.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
export PATH="$here/bin:$here/.venv/bin:$PATH"

make --no-print-directory venv tools-validate tools-scan dev-secrets
exec python -m pytest "$@"
