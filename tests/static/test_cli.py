"""`yuxi-k8s validate`: exit codes, formats, progress lines, failures named by overlay and object."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from tests.support import require_schemas, require_tools
from yuxi_k8s.cli import main

CLEAN = Path(__file__).parent / "clean"

# The digest tests/static/clean/app.yaml pins its image with (prod wants digests, YK-IMG-004).
DIGEST = "sha256:4b0c8a1f3e5d7c9b2a4f6e8d0c2b4a6f8e0d2c4b6a8f0e2d4c6b8a0f2e4d6c8b"


@pytest.fixture(autouse=True)
def tools() -> None:
    require_tools("kubectl")
    require_schemas()


@pytest.fixture
def overlay(tmp_path: Path) -> Path:
    """A copy of the clean kustomization, under a folder named prod (so the env is inferred)."""
    target = tmp_path / "prod"
    shutil.copytree(CLEAN, target)
    return target


def inject(overlay: Path, old: str, new: str) -> None:
    app = overlay / "app.yaml"
    text = app.read_text()
    assert old in text, old
    app.write_text(text.replace(old, new, 1))


def test_clean_overlay_exits_0_with_progress(overlay: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(overlay)]) == 0
    out, err = capsys.readouterr()
    assert f"[1/1] {overlay} (env prod)" in err and "— ok" in err
    assert "PASS" in out


def test_violation_exits_1_naming_overlay_object_rule_and_fix(
    overlay: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inject(
        overlay,
        f"image: ghcr.io/xerrors/yuxi-know-api:0.6.0@{DIGEST}",
        "image: ghcr.io/xerrors/yuxi-know-api:latest",
    )
    assert main(["validate", str(overlay)]) == 1
    out = capsys.readouterr().out
    assert f"== {overlay} (env prod" in out
    line = next(ln for ln in out.splitlines() if "YK-IMG-001" in ln)
    assert "Deployment yuxi/api" in line and ":latest" in line
    assert "fix: Pin a released version tag" in out


def test_schema_failure_exits_1_naming_the_object(overlay: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inject(overlay, "kind: ServiceAccount", "kind: ServiceAcount")
    assert main(["validate", str(overlay)]) == 1
    out = capsys.readouterr().out
    assert "SCHEMA  ServiceAcount yuxi/api: unknown kind ServiceAcount" in out


def test_render_failure_exits_1_naming_the_overlay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "kustomization.yaml").write_text("resources: [missing.yaml]\n")
    assert main(["validate", str(broken)]) == 1
    out, err = capsys.readouterr()
    assert f"RENDER  {broken}:" in out and "missing.yaml" in out
    assert "render FAILED" in err


def test_not_a_kustomization(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path)]) == 1
    assert "neither a kustomization nor Kubernetes manifests" in capsys.readouterr().out
    assert main(["validate", str(tmp_path / "missing")]) == 1
    assert "no such file or directory" in capsys.readouterr().out


def test_plain_manifest_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A folder of manifests without kustomization.yaml (e.g. Argo CD Applications) is read as is."""
    (tmp_path / "prod").mkdir()
    shutil.copy(CLEAN / "app.yaml", tmp_path / "prod" / "app.yaml")
    assert main(["validate", str(tmp_path / "prod")]) == 0
    assert "8 objects" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate"]) == 2
    assert "give at least one kustomization PATH" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["validate", "--format", "yaml", "x"])
    assert exc.value.code == 2


def test_env_override(overlay: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inject(overlay, "replicas: 3", "replicas: 1")
    assert main(["validate", str(overlay)]) == 1
    assert main(["validate", "--env", "dev", str(overlay)]) == 0
    assert "(env dev)" in capsys.readouterr().err


def test_json_report(overlay: Path, tmp_path: Path) -> None:
    inject(overlay, "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false")
    out = tmp_path / "report.json"
    assert main(["validate", "-q", "--format", "json", "--output", str(out), str(overlay)]) == 1
    doc = json.loads(out.read_text())
    assert doc["ok"] is False and doc["summary"]["violations"] == 1
    [violation] = doc["overlays"][0]["violations"]
    assert violation["rule"] == "YK-HARD-001"
    assert (violation["kind"], violation["namespace"], violation["name"]) == ("Deployment", "yuxi", "api")
    assert violation["fix"]


def test_junit_report(overlay: Path, tmp_path: Path) -> None:
    inject(overlay, "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false")
    out = tmp_path / "junit.xml"
    assert main(["validate", "-q", "--format", "junit", "--output", str(out), str(overlay)]) == 1
    root = ET.parse(out).getroot()
    assert root.tag == "testsuites" and root.get("failures") == "1"
    failed = [c for c in root.iter("testcase") if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == ["YK-HARD-001 Read-only root file system"]
    assert "Deployment yuxi/api" in failed[0].find("failure").text


def test_suppressed_findings_are_reported(overlay: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inject(overlay, "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false")
    docs = list(yaml.safe_load_all((overlay / "app.yaml").read_text()))
    api = next(d for d in docs if d["kind"] == "Deployment")
    api["metadata"]["annotations"] = {"yuxi-k8s.io/allow-YK-HARD-001": "writes a cache under /app"}
    (overlay / "app.yaml").write_text(yaml.safe_dump_all(docs))
    assert main(["validate", str(overlay)]) == 0
    out = capsys.readouterr().out
    assert "allowed YK-HARD-001 Deployment yuxi/api" in out and "(reason: writes a cache under /app)" in out


def test_several_paths_one_report(overlay: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    second = tmp_path / "staging"
    shutil.copytree(overlay, second)
    assert main(["validate", str(overlay), str(second)]) == 0
    err = capsys.readouterr().err
    assert "[1/2]" in err and "[2/2]" in err and "(env staging)" in err


def test_print_crd_paths(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--print-crd-paths"]) == 0
    paths = capsys.readouterr().out.split()
    assert paths and all(Path(p).is_file() for p in paths)


def test_duplicate_keys_fail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """kubeconform -strict refuses duplicate keys; kustomize does too, and so do plain manifest folders."""
    manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  a: '1'\n  a: '2'\n"
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "cm.yaml").write_text(manifest)
    kust = tmp_path / "kust"
    kust.mkdir()
    (kust / "cm.yaml").write_text(manifest)
    (kust / "kustomization.yaml").write_text("resources: [cm.yaml]\n")
    assert main(["validate", "-q", str(plain), str(kust)]) == 1
    out = capsys.readouterr().out
    assert "duplicate key 'a'" in out and 'mapping key "a" already defined' in out


def test_module_entry_point_used_by_make(overlay: Path) -> None:
    """`make validate` runs `python -m yuxi_k8s.validate`: same command, same exit codes."""
    import subprocess
    import sys

    ok = subprocess.run(
        [sys.executable, "-m", "yuxi_k8s.validate", str(overlay)], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    assert "PASS" in ok.stdout and "[1/1]" in ok.stderr
    inject(overlay, "replicas: 3", "replicas: 1")
    bad = subprocess.run(
        [sys.executable, "-m", "yuxi_k8s.validate", "-q", str(overlay)], capture_output=True, text=True
    )
    assert bad.returncode == 1 and "YK-AVL-001" in bad.stdout
    usage = subprocess.run([sys.executable, "-m", "yuxi_k8s.validate"], capture_output=True, text=True)
    assert usage.returncode == 2 and "give at least one kustomization PATH" in usage.stderr


def test_overlay_image_pin_that_does_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An overlay `images:` entry naming an image the base already renamed is reported (YK-IMG-003)."""
    shutil.copytree(CLEAN, tmp_path / "base")
    prod = tmp_path / "overlays" / "prod"
    prod.mkdir(parents=True)
    kustomization = (
        "resources: [../../base]\nimages:\n  - name: {name}\n    newTag: 0.7.0\n    digest: " + DIGEST + "\n"
    )
    (prod / "kustomization.yaml").write_text(kustomization.format(name="yuxi-know-api"))
    assert main(["validate", str(prod)]) == 1
    out = capsys.readouterr().out
    assert "YK-IMG-003 Kustomization" in out and "images entry yuxi-know-api" in out
    (prod / "kustomization.yaml").write_text(kustomization.format(name="ghcr.io/xerrors/yuxi-know-api"))
    assert main(["validate", str(prod)]) == 0


def test_patch_that_matches_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """kustomize ignores a patch whose target matches nothing; the validator does not (YK-OBJ-005)."""
    shutil.copytree(CLEAN, tmp_path / "base")
    prod = tmp_path / "overlays" / "prod"
    prod.mkdir(parents=True)
    (prod / "replicas.patch.yaml").write_text("- op: replace\n  path: /spec/replicas\n  value: 4\n")
    kustomization = (
        "resources: [../../base]\npatches:\n  - path: replicas.patch.yaml\n"
        "    target: {{kind: Deployment, name: {name}}}\n"
    )
    (prod / "kustomization.yaml").write_text(kustomization.format(name="apii"))
    assert main(["validate", str(prod)]) == 1
    assert "YK-OBJ-005 Kustomization" in capsys.readouterr().out
    (prod / "kustomization.yaml").write_text(kustomization.format(name="api"))
    assert main(["validate", str(prod)]) == 0


def test_dead_patch_in_a_component(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every local layer (bases, components) is checked, and named by its folder."""
    shutil.copytree(CLEAN, tmp_path / "base")
    component = tmp_path / "components" / "scale"
    component.mkdir(parents=True)
    (component / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\npatches:\n"
        '  - patch: \'[{"op": "replace", "path": "/spec/replicas", "value": 4}]\'\n'
        "    target: {kind: Deployment, name: apii}\n"
    )
    prod = tmp_path / "overlays" / "prod"
    prod.mkdir(parents=True)
    (prod / "kustomization.yaml").write_text(
        "resources: [../../base]\ncomponents: [../../components/scale]\n"
    )
    assert main(["validate", str(prod)]) == 1
    line = next(ln for ln in capsys.readouterr().out.splitlines() if "YK-OBJ-005" in ln)
    assert f"Kustomization {component}" in line and "Deployment/apii matches nothing" in line


def test_module_entry_point_handles_ctrl_c_like_the_cli(tmp_path: Path) -> None:
    """`python -m yuxi_k8s.validate` goes through yuxi_k8s.cli.main: Ctrl-C is one line and exit 130.

    The run is held reading a FIFO (a plain manifest), interrupted there, then released.
    """
    import errno
    import os
    import signal
    import subprocess
    import sys
    import time

    fifo = tmp_path / "app.yaml"  # a folder of plain manifests, the one file a FIFO
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [sys.executable, "-m", "yuxi_k8s.validate", "-q", "--no-schema", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as in a terminal: a run started in the background (`cmd &`, nohup) hands its
        # children SIGINT ignored, and Python then never turns it into KeyboardInterrupt.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 30
    while True:  # a writer can open the FIFO only once the validator opened it to read
        try:
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as exc:
            assert exc.errno == errno.ENXIO, exc
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                out, err = proc.communicate()
                why = f"the validator never opened the FIFO (exit {proc.returncode}): {out}{err}"
                raise AssertionError(why) from None
            time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    os.write(writer, (CLEAN / "app.yaml").read_bytes())  # release the read the interrupt waits behind
    os.close(writer)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["yuxi-k8s validate: interrupted"]
