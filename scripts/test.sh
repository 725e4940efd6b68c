#!/usr/bin/env bash
# The README's test command runs this: set up all that the tiers need, then pytest.
# Extra arguments go to pytest (e.g. -m static, -k lock, --keep-cluster).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
export PATH="$here/bin:$here/.venv/bin:$PATH"

make --no-print-directory venv tools-validate dev-secrets
if [[ " $* " != *" -m static "* ]]; then
  scripts/services.sh up
  # shellcheck disable=SC1091
  source .run/services.env
fi
if [[ " $* " != *" -m static "* && " $* " != *" -m db "* ]]; then
  make --no-print-directory tools
fi
exec python -m pytest "$@"
