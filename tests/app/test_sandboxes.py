"""A replica that stops leaves the sandboxes other processes use (row 11 of the per-process state).

Each conversation thread has one sandbox, named by the thread, which every api replica and the
worker share through the sandbox provisioner. The application deletes, when a process stops,
every sandbox that process touched. The tests run the application's provisioner (the
sandbox-provisioner image's server, its memory backend) and processes of the real app on
loopback; the kit's test route gets a thread's sandbox the way a sandbox tool call does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.app.http import StartServer, admin_headers, call
from yuxi_k8s.app.localrun import Server
from yuxi_k8s.cluster.kube import poll

HOOKS = {"YUXI_K8S_TEST_HOOKS": "1"}
THREAD = "thread-shared-sandbox"
# The application alone, behind the kit's entry point (file mode patches nothing) for the test route.
APP_ALONE = {"CONFIG_MODE": "file", "YUXI_K8S_STORE_WAIT_SECONDS": "0"}

StartProvisioner = Callable[..., str]


@pytest.fixture
def provisioner(provisioner_tree: Path, tmp_path: Path) -> Iterator[StartProvisioner]:
    """``start(**env)``: the application's provisioner on loopback, its URL; stopped afterwards."""
    from contextlib import ExitStack

    from yuxi_k8s.app.localdeps import provisioner_server

    with ExitStack() as stack:

        def start(**env: str) -> str:
            return stack.enter_context(
                provisioner_server(provisioner_tree, tmp_path / "provisioner.log", env)
            )

        yield start


def _sandboxes(provisioner_url: str) -> set[str]:
    """The sandboxes the provisioner keeps (listing touches none of them)."""
    answer = httpx.get(f"{provisioner_url}/api/sandboxes", timeout=10)
    answer.raise_for_status()
    return {s["sandbox_id"] for s in answer.json()["sandboxes"]}


def _use(server: Server, auth: dict[str, str]) -> str:
    answer = call(server, "POST", "/api/yuxi-k8s/test/sandbox", auth, json={"thread_id": THREAD})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["sandbox_id"])


def _both_use_one_sandbox(
    servers: StartServer, url: str, **env: str
) -> tuple[Server, Server, str, dict[str, str]]:
    a = servers("a", SANDBOX_PROVISIONER_URL=url, **HOOKS, **env)
    b = servers("b", SANDBOX_PROVISIONER_URL=url, **HOOKS, **env)
    auth = admin_headers(a)
    sandbox = _use(a, auth)
    assert _use(b, auth) == sandbox  # one sandbox per thread, whichever process asks
    assert _sandboxes(url) == {sandbox}
    return a, b, sandbox, auth


def test_stopping_one_replica_leaves_the_sandbox_the_other_uses(
    servers: StartServer, provisioner: StartProvisioner
) -> None:
    url = provisioner()
    a, b, sandbox, auth = _both_use_one_sandbox(servers, url)
    a.terminate()  # SIGTERM, as a rollout or a scale-in sends it: the app's lifespan shuts down
    assert _sandboxes(url) == {sandbox}
    assert _use(b, auth) == sandbox
    assert "leaving 1 sandbox(es) to the provisioner's idle reaper" in a.log.read_text()


def test_a_sandbox_nobody_uses_is_reaped_by_the_provisioner(
    servers: StartServer, provisioner: StartProvisioner
) -> None:
    # The provisioner's reaper: idle after 2 s (its floor, the command timeout, set low), checked each second.
    url = provisioner(
        SANDBOX_EXEC_TIMEOUT_SECONDS="1",
        SANDBOX_IDLE_TIMEOUT_SECONDS="2",
        SANDBOX_IDLE_CHECK_INTERVAL_SECONDS="1",
    )
    a = servers("a", SANDBOX_PROVISIONER_URL=url, **HOOKS)
    sandbox = _use(a, admin_headers(a))
    a.terminate()
    poll(
        f"the provisioner to reap the idle sandbox {sandbox}",
        lambda: sandbox not in _sandboxes(url),
        60,
        interval=0.5,
    )


def test_the_application_alone_deletes_the_sandbox_the_other_replica_uses(
    servers: StartServer, provisioner: StartProvisioner
) -> None:
    url = provisioner()
    a, _b, sandbox, _auth = _both_use_one_sandbox(servers, url, **APP_ALONE)
    a.terminate()
    assert sandbox not in _sandboxes(url)
