"""The test harness sets up only what the collected tests need.

`scripts/test.sh tests/static` must start no service and build no cluster binary: no static test
is marked db or cluster or asks for the loopback services or a cluster, and the static tier runs
through scripts/test.sh with a PATH that has no Go, no apt and no PostgreSQL or Redis server (any
attempt to build or install or start one would fail the run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.collect_probe import PREFIX
from tests.support import require_schemas, require_tools
from yuxi_k8s.paths import REPO_ROOT

NEEDS_SETUP = {"loopback_services", "kube_cluster"}
# What building, installing or starting anything would call.
ABSENT = (
    "go", "gofmt", "apt-get", "apt", "dpkg", "debootstrap", "pg_ctl", "initdb", "postgres",
    "pg_ctlcluster", "redis-server", "runuser", "docker", "kind",
)  # fmt: skip


def collected(*args: str) -> list[dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "tests.collect_probe", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return [json.loads(line[len(PREFIX) :]) for line in proc.stdout.splitlines() if line.startswith(PREFIX)]


def test_no_static_test_needs_services_or_a_cluster() -> None:
    items = collected("tests/static")
    assert len(items) > 100
    wrong = [
        (i["id"], sorted(set(i["markers"]) & {"db", "cluster"}), sorted(set(i["fixtures"]) & NEEDS_SETUP))
        for i in items
        if {"db", "cluster"} & set(i["markers"]) or NEEDS_SETUP & set(i["fixtures"])
    ]
    assert not wrong, wrong
    assert all("static" in i["markers"] for i in items)


def test_the_probe_sees_what_the_other_tiers_need() -> None:
    """The check above is only as good as the probe: the db tier is seen to need the services."""
    items = {i["id"]: i for i in collected("tests/e2e/test_server_local.py")}
    some = next(i for name, i in items.items() if "test_ready_when_postgres_and_redis_answer" in name)
    assert "db" in some["markers"] and "loopback_services" in some["fixtures"]


def _path_without(names: tuple[str, ...], shadow: Path) -> str:
    """A PATH of symlinks to every program on the current PATH except *names*."""
    shadow.mkdir()
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        if not folder or not Path(folder).is_dir():
            continue
        for program in Path(folder).iterdir():
            link = shadow / program.name
            if program.name in names or link.exists() or link.is_symlink():
                continue
            if program.is_file() and os.access(program, os.X_OK):
                link.symlink_to(program)
    return str(shadow)


def test_scripts_test_sh_runs_static_tests_without_go_apt_or_services(tmp_path: Path) -> None:
    require_tools("kubectl")
    require_schemas()  # prepared now (with Go if need be): the run below must not need it
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YUXI_TEST_", "PYTEST_"))}
    env["PATH"] = _path_without(ABSENT, tmp_path / "bin")
    proc = subprocess.run(
        [str(REPO_ROOT / "scripts" / "test.sh"), "tests/static/test_schema.py", "tests/static/test_paths.py",
         "-q", "-p", "no:cacheprovider"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-2000:]
    assert "services:" not in proc.stderr and "building" not in proc.stderr, proc.stderr[-2000:]
