"""An outside scanner agrees: checkov (pinned in tools/checkov/requirements.txt, installed by
`make tools-scan` into a venv of its own, linked as bin/checkov) finds nothing on the rendered
staging and prod overlays. The kit's deliberate exceptions are `checkov.io/skipN` annotations on
the objects, each with its reason; this test holds them to having one."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support import require, require_tools
from yuxi_k8s.paths import REPO_ROOT, bin_dir
from yuxi_k8s.validate.render import kustomize_build

ENVS = ("staging", "prod")
SKIP = re.compile(r"^checkov\.io/skip\d+$")


def _checkov() -> Path:
    checkov = bin_dir() / "checkov"
    # Not a PATH lookup: the version pinned in tools/versions.env must be what runs.
    require(
        checkov.exists(), "bin/checkov (the pinned checkov): run `make tools-scan` (scripts/tools.sh checkov)"
    )
    return checkov


@pytest.fixture(scope="module")
def renders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    require_tools("kubectl")
    folder = tmp_path_factory.mktemp("renders")
    out = {}
    for env in ENVS:
        out[env] = folder / f"{env}.yaml"
        out[env].write_text(kustomize_build(REPO_ROOT / "overlays" / env))
    return out


def test_checkov_reports_no_failed_check_on_staging_and_prod(renders: dict[str, Path]) -> None:
    checkov = _checkov()
    # --skip-download: offline, no guidelines fetched from the vendor's API.
    args = [
        str(checkov),
        "--framework",
        "kubernetes",
        "--skip-download",
        "--quiet",
        "--compact",
        "-o",
        "json",
    ]
    for path in renders.values():
        args += ["-f", str(path)]
    proc = subprocess.run(args, capture_output=True, text=True, check=False, timeout=600)
    reports = json.loads(proc.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [
        f"{c['check_id']} {c['resource']} ({Path(c['file_path']).name}): {c['check_name']}"
        for report in reports
        for c in report["results"]["failed_checks"]
    ]
    assert not failed, "checkov finds:\n" + "\n".join(failed)
    skipped = sum(report["summary"]["skipped"] for report in reports)
    passed = sum(report["summary"]["passed"] for report in reports)
    assert all(report["summary"]["parsing_errors"] == 0 for report in reports), reports
    assert passed > 500 and skipped > 0, (passed, skipped)


def test_every_checkov_skip_carries_a_reason(renders: dict[str, Path]) -> None:
    seen = 0
    for env, path in renders.items():
        for obj in yaml.safe_load_all(path.read_text()):
            if not obj:
                continue
            for key, value in (obj.get("metadata", {}).get("annotations") or {}).items():
                if SKIP.match(key):
                    seen += 1
                    check, _, reason = str(value).partition("=")
                    where = f"{env}: {obj['kind']} {obj['metadata']['name']} {key}"
                    assert re.fullmatch(r"CKV_K8S_\d+", check), where
                    assert len(reason.split()) >= 5, f"{where}: give the reason after '='"
    assert seen >= 10
