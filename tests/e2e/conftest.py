"""Fixtures of the end-to-end tier: the run folder, the runtime image, throwaway namespaces, diagnostics.

A run gets ``.run/e2e/<run-id>/``: rendered manifests, figures (failover.json)
and, when something fails, ``diagnostics/``. Every namespace a run creates is
named ``yx-<run-id>-<scenario>`` and deleted at the end (kept with --keep-cluster).
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import diagnostics
from tests.e2e.kube import Kube
from tests.e2e.run import ACTIVE, RUN_DIR, RUN_ID
from tests.support import require
from yuxi_k8s import paths


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
def cluster_images_lock() -> Iterator[None]:
    """One run at a time loads the application's images into this machine's clusters.

    They carry fixed tags (``yuxi-know-api:0.6.1``): a second checkout's run loading its own
    build would replace the images the first run's pods start from, mid-run. A second run
    waits here, saying for whom, and goes on when the first ends (the lock ends with it)."""
    lock = paths.cache_dir("e2e") / "cluster-images.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            print(f"waiting for another e2e run on this machine ({handle.read().strip()})", file=sys.stderr)
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.truncate(0)
        handle.write(f"pid {os.getpid()}, checkout {paths.repo_root()}\n")
        handle.flush()
        yield


@pytest.fixture(scope="session")
def app_images(kube_cluster: Any, run_dir: Path, cluster_images_lock: None) -> dict[str, str]:
    """The real application's images (and the kit-built dependencies), built from the pinned
    source (``YUXI_K8S_APP_SOURCE``, else a clone of the pinned tag) and loaded into the cluster.
    Returns image kind -> reference (``api`` -> ``localhost/yuxi-k8s/yuxi-know-api:0.6.1``)."""
    from yuxi_k8s.app import images, source
    from yuxi_k8s.cluster.providers import ProviderError

    t0 = time.monotonic()
    try:
        built = images.build_all(source.resolve())
    except (images.ImageError, source.SourceError) as exc:
        pytest.fail(f"building the application's images: {exc}", pytrace=False)
    built_s = time.monotonic() - t0
    loads = {}
    for kind, image in built.items():
        t1 = time.monotonic()
        try:
            kube_cluster.load_image(image.archive)
        except ProviderError as exc:  # e.g. a remote cluster: only a registry could serve the images
            require(False, f"a way to load the application's images into the cluster ({exc})")
        loads[kind] = round(time.monotonic() - t1, 1)
    record = {
        "build_s": round(built_s, 1),
        "load_s": loads,
        "images": {
            k: {"name": v.name, "digest": v.digest, "archive": str(v.archive)} for k, v in built.items()
        },
    }
    (run_dir / "images.json").write_text(json.dumps(record, indent=2) + "\n")
    return {kind: image.name for kind, image in built.items()}


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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A module with SCENARIO_ORDER runs its tests in that order, and lists every one of them:
    its scenarios build on each other (one deployed stack), so the order is stated, not implied."""
    by_module: dict[Any, list[pytest.Item]] = {}
    for item in items:
        order = getattr(item.module, "SCENARIO_ORDER", None) if hasattr(item, "module") else None
        if order is not None:
            by_module.setdefault(item.module, []).append(item)
    for module, scenario_items in by_module.items():
        order = list(module.SCENARIO_ORDER)
        defined = {n for n in dir(module) if n.startswith("test_")}
        if set(order) != defined or len(order) != len(set(order)):
            raise pytest.UsageError(
                f"{module.__name__}: SCENARIO_ORDER must list each test once "
                f"(missing {sorted(defined - set(order))}, unknown {sorted(set(order) - defined)})"
            )
        positions = sorted(items.index(item) for item in scenario_items)
        ranked = sorted(scenario_items, key=lambda item: order.index(item.originalname))  # type: ignore[attr-defined]
        for position, item in zip(positions, ranked, strict=True):
            items[position] = item
