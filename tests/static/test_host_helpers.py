"""The one way to each host job: process liveness (yuxi_k8s.procfs) and apt installs (yuxi_k8s.apt)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from yuxi_k8s import apt, procfs

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


def test_a_running_process_is_alive_and_named() -> None:
    comm = Path("/proc/self/comm").read_text().strip()
    assert procfs.alive(os.getpid())
    assert procfs.alive(str(os.getpid()), comm[:5])
    assert not procfs.alive(os.getpid(), "redis-server")  # a reused pid running another program


@pytest.mark.parametrize("pid", [None, "", "x", 0, -1, "999999999"])
def test_nonsense_and_missing_pids_are_not_alive(pid: object) -> None:
    assert not procfs.alive(pid)  # type: ignore[arg-type]


def test_exited_and_zombie_processes_are_not_alive() -> None:
    done = subprocess.Popen(["true"])
    done.wait()
    assert not procfs.alive(done.pid)
    zombie = subprocess.Popen(["true"])
    try:
        os.waitid(os.P_PID, zombie.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
        assert Path(f"/proc/{zombie.pid}/stat").exists()
        assert not procfs.alive(zombie.pid)
    finally:
        zombie.wait()


def test_stop_child_terms_then_kills() -> None:
    polite = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    procfs.stop_child(polite)
    assert polite.returncode == -15  # SIGTERM was enough
    stubborn = subprocess.Popen(
        [sys.executable, "-c", "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
         "print('ready', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert stubborn.stdout is not None and stubborn.stdout.readline() == "ready\n"
    procfs.stop_child(stubborn, timeout=0.5)
    assert stubborn.returncode == -9  # ignored SIGTERM: killed after the timeout
    procfs.stop_child(stubborn)  # already ended: nothing to do


def test_argv0_cwd_and_listening_pids(tmp_path: Path) -> None:
    code = "import time; print('ready', flush=True); time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"  # past exec
        assert procfs.argv0(child.pid) == sys.executable
        assert procfs.cwd(child.pid) == str(tmp_path)
    finally:
        child.kill()
        child.wait()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        assert os.getpid() in procfs.listening_pids(port)
    assert os.getpid() not in procfs.listening_pids(port)


def test_apt_does_nothing_for_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(apt.subprocess, "run", lambda *a, **k: pytest.fail("apt-get ran"))
    apt.install([])


def test_apt_says_in_one_line_what_to_install_when_not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(apt.os, "geteuid", lambda: 1000)
    with pytest.raises(apt.AptError) as err:
        apt.install(["postgresql", "redis-server"])
    assert str(err.value) == (
        "missing postgresql redis-server: install them as root (apt-get install postgresql redis-server)"
    )


def test_apt_without_apt_get(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(apt.os, "geteuid", lambda: 0)
    monkeypatch.setattr(apt.shutil, "which", lambda name: None)
    with pytest.raises(apt.AptError, match=r"^missing runc, and this machine has no apt-get"):
        apt.install(["runc"])


def test_apt_runs_update_then_install_and_names_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def fake_run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        assert kw["env"]["DEBIAN_FRONTEND"] == "noninteractive"  # type: ignore[index]
        failed = cmd[1] == "install"
        return subprocess.CompletedProcess(cmd, 100 if failed else 0, "", "E: Unable to locate package x\n")

    monkeypatch.setattr(apt.os, "geteuid", lambda: 0)
    monkeypatch.setattr(apt.shutil, "which", lambda name: "/usr/bin/apt-get")
    monkeypatch.setattr(apt.subprocess, "run", fake_run)
    with pytest.raises(apt.AptError) as err:
        apt.install(["x"], recommends=False)
    assert calls == [
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "x"],
    ]
    assert str(err.value) == "apt-get install x failed: E: Unable to locate package x"


def test_missing_names_the_packages_whose_file_is_absent(tmp_path: Path) -> None:
    (tmp_path / "here").touch()
    assert apt.missing({"a": tmp_path / "here", "b": tmp_path / "absent"}) == ["b"]
