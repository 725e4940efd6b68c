#!/usr/bin/env bash
# Create .venv with the package (editable) and its dev tools, pinned by constraints.txt.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv="$here/.venv"
py=${PYTHON:-python3}
"$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  { echo "venv.sh: Python 3.11 or newer is required (found $("$py" --version 2>&1))" >&2; exit 1; }
[[ -x $venv/bin/python ]] || "$py" -m venv "$venv"
echo "==> installing yuxi-k8s and its dev tools into .venv" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  -c "$here/constraints.txt" -e "$here[dev]"
touch "$venv/.stamp"
