"""Fixtures of the end-to-end tier: the run folder, the runtime image, throwaway namespaces, diagnostics.

A run gets ``.run/e2e/<run-id>/``: rendered manifests, figures (failover.json)
and, when something fails, ``diagnostics/``. Every namespace a run creates is
named ``yx-<run-id>-<scenario>`` and deleted at the end (kept with --keep-cluster).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import diagnostics
from tests.e2e.kube import Kube
from tests.e2e.run import ACTIVE, RUN_DIR, RUN_ID
from tests.support import require


@pytest.fixture(scope="session", autouse=True)
def e2e_clock() -> Iterator[None]:
    """Wall time of the e2e tests of this session, written to the run folder for BENCHMARKS.md."""
    t0 = time.monotonic()
    yield
    if RUN_DIR.exists():
        elapsed = round(time.monotonic() - t0, 1)
        (RUN_DIR / "duration.json").write_text(json.dumps({"e2e_tests_s": elapsed}) + "\n")


@pytest.fixture(scope="session")
def run_dir() -> Path:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    latest = RUN_DIR.parent / "latest"
    latest.unlink(missing_ok=True)
    latest.symlink_to(RUN_DIR.name)
    return RUN_DIR


@pytest.fixture(scope="session")
def kube(kube_cluster: Any) -> Kube:
    client = Kube(str(kube_cluster.kubeconfig))
    ACTIVE["kube"] = client
    return client


@pytest.fixture(scope="session")
def runtime_image(kube_cluster: Any, run_dir: Path) -> str:
    """The locally built runtime image, loaded into the cluster; returns its name."""
    from yuxi_k8s.server.image import build_runtime_image

    t0 = time.monotonic()
    image = build_runtime_image()
    built = time.monotonic() - t0
    from yuxi_k8s.cluster.providers import ProviderError

    try:
        kube_cluster.load_image(image.archive)
    except ProviderError as exc:  # e.g. a remote cluster: only a registry could serve the image
        require(False, f"a way to load the runtime image into the cluster ({exc})")
    (run_dir / "image.txt").write_text(
        f"{image.name}\n{image.archive}\nbuild {built:.1f}s, load {time.monotonic() - t0 - built:.1f}s\n"
    )
    return image.name


@pytest.fixture(scope="session")
def make_namespace(kube: Kube, request: pytest.FixtureRequest) -> Iterator[Callable[..., str]]:
    """Create ``yx-<run-id>-<suffix>`` (Pod Security restricted unless told otherwise)."""
    created: list[str] = []

    def make(suffix: str, *, restricted: bool = True, labels: dict[str, str] | None = None) -> str:
        name = f"yx-{RUN_ID}-{suffix}"[:63].rstrip("-")
        all_labels = {"app.kubernetes.io/managed-by": "yuxi-k8s-e2e", **(labels or {})}
        if restricted:
            all_labels.update(
                {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/warn": "restricted",
                }
            )
        kube.apply(
            [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": all_labels}}]
        )
        created.append(name)
        ACTIVE["namespaces"].append(name)
        return name

    yield make
    if request.config.getoption("--keep-cluster"):
        return
    for name in created:
        kube.run("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    kube = ACTIVE["kube"]
    if not report.failed or kube is None or not ACTIVE["namespaces"] or "e2e" not in item.nodeid:
        return
    out = RUN_DIR / "diagnostics" / item.name.replace("/", "_")
    try:
        summary = diagnostics.collect(kube, list(ACTIVE["namespaces"]), out)
    except Exception as exc:  # never hide the real failure
        summary = f"could not collect diagnostics: {exc}"
    report.sections.append(("e2e diagnostics", summary))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print this run's figures (failover, propagation, self-healing, duration) after the tests."""
    figures = {
        name: RUN_DIR / f"{name}.json" for name in ("failover", "propagation", "self_healing", "duration")
    }
    present = {name: path for name, path in figures.items() if path.exists()}
    if not present:
        return
    terminalreporter.section(f"e2e figures ({RUN_DIR})")
    failover = present.pop("failover", None)
    if failover:
        for scenario, fig in json.loads(failover.read_text()).items():
            terminalreporter.write_line(
                f"failover {scenario:18} requests={fig['requests']} failed={fig['failed']} "
                f"errors={fig['errors']} time_to_full_replicas={fig['time_to_full_replicas_s']}s"
            )
    propagation = present.pop("propagation", None)
    if propagation:
        fig = json.loads(propagation.read_text())
        terminalreporter.write_line(
            f"config propagation to {fig['replicas']} replicas: max {fig['max_s'] * 1000:.0f} ms "
            f"over {len(fig['rounds'])} writes"
        )
    for name, path in present.items():
        terminalreporter.write_line(f"{name}: {json.dumps(json.loads(path.read_text()))}"[:400])
