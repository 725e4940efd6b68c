"""The real Yuxi-Know 0.6.1 on a real cluster: overlays/dev through tests/e2e/overlay, in one namespace.

Two api replicas, the worker, web (nginx), the sandbox provisioner (kubernetes backend, the
kit's sandbox stand-in), PostgreSQL, Redis, MinIO, Neo4j and Milvus (milvus-lite's server), all
from images built from the pinned source or by the kit; full mode (knowledge bases on). The
scenarios share one deployed stack
(deploying takes most of the time on 2 cores) and run in the order SCENARIO_ORDER
names (tests/e2e/conftest.py enforces it): later ones build on the admin and the
stand-in provider the earlier ones created, and the file-mode switch comes last.
Figures go to .run/e2e/<run-id>/ (propagation.json, failover.json, timings.json, ...).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.app.runs_reader import RunReader
from tests.browser.harness import journey
from tests.browser.knowledge_journey import CHAT_MODEL, first_knowledge_base
from tests.e2e.kube import Kube, client_pod, is_ready, wait_pod_succeeded
from tests.e2e.run import RUN_ID, forget_namespace, register_namespace
from tests.e2e.stack import (
    API,
    OVERLAY,
    WORKER,
    AppStack,
    prepare_tree,
    render,
    sandbox_namespace,
    write_kustomization,
)
from tests.support import require
from yuxi_k8s.app.contract import load
from yuxi_k8s.cluster.kube import poll

SCENARIO_ORDER = (
    "test_migrate_job_then_the_api_and_the_apps_tables_beside_the_kits_schema",
    "test_first_admin_through_nginx_and_a_token_from_one_replica_works_on_the_other",
    "test_a_setting_changed_on_one_replica_is_served_by_the_other_within_one_second",
    "test_an_uploaded_file_lands_in_minio_and_its_url_works_at_the_web_host",
    "test_a_chat_streams_through_nginx_and_a_queued_run_is_consumed_by_the_worker",
    "test_a_milvus_knowledge_base_made_on_one_replica_is_listed_and_read_on_the_other",
    "test_a_document_indexed_through_one_replica_is_found_by_a_query_on_the_other",
    "test_an_agent_on_the_other_replica_answers_from_the_knowledge_base_tool",
    "test_a_deleted_file_and_knowledge_base_stay_deleted_after_the_other_replica_edits",
    "test_a_lightrag_knowledge_base_fed_through_both_replicas_finds_entities_of_every_document",
    "test_a_graph_uploaded_through_one_replica_is_queried_and_extended_through_the_other",
    "test_failover_when_an_api_pod_is_deleted",
    "test_failover_when_an_api_container_is_killed_with_sigkill",
    "test_failover_during_a_rolling_restart",
    "test_a_rolling_restart_keeps_a_task_running_on_the_other_replica",
    "test_an_answer_read_through_the_web_survives_a_rolling_restart_of_the_api",
    "test_a_sandbox_pod_made_through_one_replica_serves_the_other_and_outlives_a_rollout",
    "test_a_user_in_a_browser_builds_a_knowledge_base_through_the_web_service",
    "test_network_policies_allow_the_apps_flows_and_refuse_the_rest",
    "test_switch_to_file_mode_and_back_serves_the_same_settings",
)
ADMIN = {"user_id": "e2e_admin", "password": "E2e-admin-pass-1"}
WEB_HOST = "web"  # the web Service's name: HOST_IP in the app's settings
WEB = f"http://{WEB_HOST}"  # the web Service (port 80 -> nginx on 8080)
STANDIN = {
    "name": "Stand-in",
    "url": "http://model-standin:8000",
    "base_url": "http://model-standin:8000/v1",
    "default": "standin-chat",
    "env": "NO_API_KEY",
    "models": ["standin-chat"],
}
EMBED_MODEL = "vllm/Qwen/Qwen3-Embedding-0.6B"  # the catalogue sends it to the pod's stand-in sidecar
DOCUMENT = (
    "Harbour Lighthouse Maintenance\n\n"
    "The Harbour Lighthouse lamp is cleaned every Tuesday by the Coastal Guild.\n"
    "Its lens was made in Glasgow and weighs four tonnes.\n"
)
# One document per replica for the LightRAG knowledge base, each with entities of its own.
GRAPH_DOCUMENTS = {
    "lighthouse.md": "The Harbour Lighthouse lamp is cleaned by the Coastal Guild every Tuesday.\n",
    "observatory.md": "The Northern Observatory telescope is polished by the Astral Society in Aberdeen.\n",
}
KNOWLEDGE: dict[str, str] = {}  # what the knowledge-base scenarios made, for the ones after them
REUSE_ENV = "YUXI_E2E_STACK"
LOAD_RATE = 20  # requests per second through the Service
LOAD_SECONDS = 50
FIGURES: dict[str, Any] = {}


def _write_figures(run_dir: Path, name: str, data: Any) -> None:
    (run_dir / name).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _adopt_tree(run_dir: Path, namespace: str) -> None:
    """A reused stack keeps the tree (and so the passwords) of the run that deployed it:
    fresh credentials would roll PostgreSQL onto a data directory set up with the old ones."""
    origin = run_dir.parent / namespace.removeprefix("yx-").removesuffix("-app") / "tree"
    if not (origin / ".ready").exists():
        raise AssertionError(f"{REUSE_ENV}={namespace}: no tree of the run that deployed it at {origin}")
    if not (run_dir / "tree").exists():
        shutil.copytree(origin, run_dir / "tree", symlinks=True)


@pytest.fixture(scope="module")
def stack(
    kube: Kube, app_images: dict[str, str], run_dir: Path, request: pytest.FixtureRequest
) -> Iterator[AppStack]:
    reuse = os.environ.get(REUSE_ENV, "")  # debugging: scenarios against a stack left by --keep-cluster
    namespace = reuse or f"yx-{RUN_ID}-app"
    if reuse:
        _adopt_tree(run_dir, namespace)
    tree = prepare_tree(run_dir, namespace, app_images["sandbox-standin"])
    folder = write_kustomization(
        run_dir, "stack", [tree / OVERLAY.relative_to(OVERLAY.parents[2])], app_images
    )
    st = AppStack(kube, namespace, app_images["api"], run_dir, folder, render(folder))
    for ns in (namespace, sandbox_namespace(namespace)):
        register_namespace(ns)
    t0 = time.monotonic()
    if not reuse:
        st.deploy()
    st.wait_ready()
    FIGURES["deploy_to_ready_s"] = round(time.monotonic() - t0, 1)
    st.allow_e2e_clients()
    st.start_idle_pod("e2e-client")
    yield st
    _write_figures(run_dir, "timings.json", FIGURES)
    if not request.config.getoption("--keep-cluster") and not reuse:
        for ns in (namespace, sandbox_namespace(namespace)):
            kube.run("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)
            forget_namespace(ns)
        st.delete_cluster_scoped()


def _psql(stack: AppStack, sql: str) -> list[str]:
    # The kit's PostgreSQL image keeps its socket in /tmp (read-only root), trusted locally.
    psql = ("psql", "-h", "/tmp", "-U", "yuxi", "-d", "yuxi_know", "-Atc", sql)
    out = stack.kube.exec(stack.namespace, "postgres-0", *psql, container="postgres")
    return [line for line in out.stdout.splitlines() if line]


def _login(stack: AppStack, base: str = WEB) -> str:
    answer = stack.client("login", "--user", ADMIN["user_id"], "--password", ADMIN["password"], base=base)
    assert answer["status"] == 200, answer
    return str(answer["body"]["access_token"])


def _token(stack: AppStack) -> str:
    if not stack.token:
        stack.token = _login(stack)
    return stack.token


# --- 1. migrate Job, api rollout, the app's tables beside the kit's schema -------------------
@pytest.mark.core
def test_migrate_job_then_the_api_and_the_apps_tables_beside_the_kits_schema(stack: AppStack) -> None:
    kube, ns = stack.kube, stack.namespace
    job = kube.json("get", "job", "migrate", ns=ns)
    assert job["status"].get("succeeded") == 1
    log = stack.job_log("migrate")
    assert "schema yuxi_k8s upgraded empty -> " in log, log[-2000:]
    assert "migrated /app/saves" in log, log[-2000:]  # the seeded v0.6.1 files went into the store
    pods = stack.api_pods()
    assert len(pods) == 2, pods
    health = stack.client("get", "/api/system/health", base="http://api:5050")
    ready = stack.client("get", "/api/system/ready", base="http://api:5050")
    assert health["status"] == 200 and health["body"]["version"] == "0.6.1", health
    assert ready["status"] == 200, ready
    assert ready["body"]["config_store"] == "ok" and ready["body"]["replica_lease"] == "ok", ready
    # One database, two owners: the app's tables in public, the kit's in its own schema.
    public = set(_psql(stack, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
    kit = set(_psql(stack, "SELECT tablename FROM pg_tables WHERE schemaname = 'yuxi_k8s'"))
    contract = load()
    assert {"users", "tasks", "conversations", "agent_runs", "knowledge_bases"} <= public, public
    assert {"config_entries", "config_providers", "replicas", "task_owners", "alembic_version"} <= kit, kit
    assert not kit & contract.owned_tables, kit & contract.owned_tables
    assert not public - contract.owned_tables, (
        f"tables in public the app does not own: {public - contract.owned_tables}"
    )
    replicas = _psql(stack, "SELECT hostname FROM yuxi_k8s.replicas WHERE lease_until > now()")
    assert set(pods) <= set(replicas), (pods, replicas)
    check = kube.exec(ns, sorted(pods)[0], "yuxi-k8s", "check", container="api", check=False)
    assert check.returncode == 0, check.stdout + check.stderr


# --- 2. first admin through nginx, login, one replica's token on the other --------------------
@pytest.mark.core
def test_first_admin_through_nginx_and_a_token_from_one_replica_works_on_the_other(stack: AppStack) -> None:
    assert stack.client("get", "/api/auth/check-first-run")["body"] == {"first_run": True}
    created = stack.client("initialize", "--user", ADMIN["user_id"], "--password", ADMIN["password"])
    assert created["status"] == 200 and created["body"]["username"] == ADMIN["user_id"], created
    assert stack.client("get", "/api/auth/check-first-run")["body"] == {"first_run": False}
    pods = stack.api_pods()
    a, b = sorted(pods)
    token_a = _login(stack, f"http://{pods[a]}:5050")
    me = stack.client("get", "/api/auth/me", base=f"http://{pods[b]}:5050", token=token_a)
    assert me["status"] == 200 and me["body"]["user_id"] == ADMIN["user_id"], me
    assert me["replica"] == b, f"the request was pinned to {b}, answered by {me['replica']}"
    stack.token = token_a


# --- 3. a setting through one replica's API, read through the other's ------------------------
@pytest.mark.core
def test_a_setting_changed_on_one_replica_is_served_by_the_other_within_one_second(
    stack: AppStack, run_dir: Path
) -> None:
    pods = stack.api_pods()
    result = stack.module_cmd(
        "yuxi_k8s.probes.propagation",
        "--pods", json.dumps(pods), "--token", _token(stack),
        "--key", "sandbox_exec_timeout_seconds", "--changes", "100",
    )  # fmt: skip
    FIGURES["propagation"] = {
        k: result[k] for k in ("replicas", "changes", "missed", "p50_s", "p99_s", "max_s")
    }
    _write_figures(run_dir, "propagation.json", result)
    print(f"\npropagation: {json.dumps(FIGURES['propagation'])}")
    assert result["missed"] == 0, result["rounds"][:3]
    assert result["max_s"] < 1.0, FIGURES["propagation"]


# --- 4. an upload into MinIO, and its URL at the web's host name -----------------------------
def test_an_uploaded_file_lands_in_minio_and_its_url_works_at_the_web_host(stack: AppStack) -> None:
    uploaded = stack.client("upload-png", "/api/auth/upload-avatar", token=_token(stack))
    assert uploaded["status"] == 200, uploaded
    url = uploaded["body"]["avatar_url"]
    assert url.startswith("http://web:9000/public/avatar/"), url  # HOST_IP=web, never localhost
    fetched = stack.client("fetch", url)
    assert fetched["status"] == 200 and fetched["sha256"] == uploaded["sha256"], (fetched, uploaded)
    # In MinIO itself (from an api pod: MinIO takes connections from the app's pods only).
    direct = url.replace("http://web:9000/", "http://minio:9000/", 1)
    api = sorted(stack.api_pods())[0]
    fetch = ("python3", "-m", "yuxi_k8s.probes.app_client", "fetch", direct)
    stored = json.loads(
        stack.kube.exec(stack.namespace, api, *fetch, container="api").stdout.splitlines()[-1]
    )
    assert stored["status"] == 200 and stored["sha256"] == uploaded["sha256"], stored


# --- 5. a streamed chat through nginx, and an agent run through Redis and the worker ---------
def test_a_chat_streams_through_nginx_and_a_queued_run_is_consumed_by_the_worker(stack: AppStack) -> None:
    token = _token(stack)
    pods = stack.api_pods()
    a, b = sorted(pods)
    # The stand-in provider came in with the seeded custom_providers.toml (the migrate Job's import);
    # one more is added through replica a's API and must be listed by replica b at once.
    listed = stack.client("get", "/api/system/custom-providers", base=f"http://{pods[b]}:5050", token=token)
    assert "standin" in json.dumps(listed["body"]), listed
    provider_id = f"standin_{RUN_ID}"  # one per run: a stack kept for debugging may be reused
    extra = {"provider_id": provider_id, "provider_data": {**STANDIN, "name": "Stand-in (API)"}}
    added = stack.client(
        "post", "/api/system/custom-providers", json.dumps(extra), base=f"http://{pods[a]}:5050", token=token
    )
    assert added["status"] == 200, added
    listed = stack.client("get", "/api/system/custom-providers", base=f"http://{pods[b]}:5050", token=token)
    assert provider_id in json.dumps(listed["body"]), listed
    configs = stack.client("get", "/api/chat/agent/ChatbotAgent/configs", token=token)
    config_id = configs["body"]["configs"][0]["id"]
    context = {"config_json": {"context": {"model": "standin/standin-chat", "tools": []}}}
    path = f"/api/chat/agent/ChatbotAgent/configs/{config_id}"
    assert stack.client("put", path, json.dumps(context), token=token)["status"] == 200
    before = stack.client("get", "http://model-standin:8000/stats")["body"]["completions"]

    answer = stack.client("chat", "--config-id", str(config_id), "--query", "hello from the kit", token=token)
    assert answer["status"] == 200 and answer["text"] == "stand-in answer: hello from the kit", answer
    # The stand-in sends a word every 0.2 s: through a buffering proxy they would arrive at once.
    FIGURES["stream"] = {k: answer[k] for k in ("chunks", "first_s", "spread_s")}
    assert answer["chunks"] >= 4 and answer["spread_s"] >= 0.4, FIGURES["stream"]
    assert answer["last"]["status"] == "finished", answer["last"]

    run = stack.client("run", "--config-id", str(config_id), "--query", "queued hello", token=token)
    assert run["statuses"][-1] == "completed", run
    after = stack.client("get", "http://model-standin:8000/stats")["body"]["completions"]
    assert after >= before + 2, (before, after)  # the chat and the run each asked the model
    worker_logs = "".join(
        stack.kube.run("logs", p["metadata"]["name"], "--all-containers", ns=stack.namespace).stdout
        for p in stack.kube.pods(stack.namespace, WORKER)
    )
    assert run["run_id"] in worker_logs, "the worker never mentions the run it should have run"


# --- 5b. knowledge bases across the replicas (full mode) ---------------------------------------
def _pinned(stack: AppStack) -> tuple[str, str]:
    """The base URLs of replica a and replica b (by pod IP: requests pinned to each)."""
    pods = stack.api_pods()
    a, b = sorted(pods)
    return f"http://{pods[a]}:5050", f"http://{pods[b]}:5050"


def _on(stack: AppStack, base: str, *args: str) -> dict[str, Any]:
    """One app_client step pinned to *base*, checked to be answered by that replica."""
    answer: dict[str, Any] = stack.client(*args, base=base, token=_token(stack))
    want = {f"http://{ip}:5050": name for name, ip in stack.api_pods().items()}[base]
    assert answer["replica"] == want, f"pinned to {want}, answered by {answer['replica']}: {answer}"
    return answer


def _kb_files(stack: AppStack, base: str, db_id: str) -> dict[str, dict[str, Any]]:
    answer = _on(stack, base, "get", f"/api/knowledge/databases/{db_id}")
    assert answer["status"] == 200, answer
    return dict(answer["body"].get("files") or {})


def _kb_ids(stack: AppStack, base: str) -> set[str]:
    answer = _on(stack, base, "get", "/api/knowledge/databases")
    assert answer["status"] == 200, answer
    return {str(db["db_id"]) for db in answer["body"]["databases"]}


def _make_kb(stack: AppStack, base: str, name: str, **extra: Any) -> str:
    body = {
        **extra,
        "database_name": name,
        "description": f"e2e {name}",
        "embed_model_name": EMBED_MODEL,
    }
    body.setdefault("kb_type", "milvus")
    made = _on(stack, base, "post", "/api/knowledge/databases", json.dumps(body))
    assert made["status"] == 200, made
    return str(made["body"]["db_id"])


def _index(stack: AppStack, base: str, db_id: str, upload: dict[str, Any]) -> None:
    """Add an uploaded file to the knowledge base and index it, as the web UI does: a file in
    MinIO (an http URL) is added with the content hash its upload answered."""
    item = upload["file_path"]
    params = {"content_type": "file", "auto_index": True, "content_hashes": {item: upload["content_hash"]}}
    body = json.dumps({"items": [item], "params": params})
    added = _on(stack, base, "post", f"/api/knowledge/databases/{db_id}/documents", body)
    assert added["status"] == 200, added


def test_a_milvus_knowledge_base_made_on_one_replica_is_listed_and_read_on_the_other(
    stack: AppStack, run_dir: Path
) -> None:
    a, b = _pinned(stack)
    # The figure first: 50 knowledge bases made through the replicas in turn, each timed until the
    # other one reads it (then deleted), from the client pod with each request pinned to a pod.
    pods = stack.api_pods()
    result = stack.module_cmd(
        "yuxi_k8s.probes.kb_visibility",
        "--pods", json.dumps(pods), "--token", _token(stack),
        "--embed-model", EMBED_MODEL, "--count", "50", "--prefix", f"visibility-{RUN_ID}",
    )  # fmt: skip
    FIGURES["kb_visibility"] = {
        k: result[k] for k in ("replicas", "count", "missed", "p50_s", "p99_s", "max_s", "create_p50_s")
    }
    _write_figures(run_dir, "kb_visibility.json", result)
    print(f"\nkb_visibility: {json.dumps(FIGURES['kb_visibility'])}")
    assert result["missed"] == 0, result["rounds"][:3]

    name = f"lighthouse-{RUN_ID}"
    db_id = _make_kb(stack, a, name)
    KNOWLEDGE.update(db_id=db_id, name=name)
    assert db_id in _kb_ids(stack, b), "replica b does not list the knowledge base a made"
    read = _on(stack, b, "get", f"/api/knowledge/databases/{db_id}")
    assert read["status"] == 200 and read["body"]["name"] == name, read
    assert read["body"]["kb_type"] == "milvus", read
    stored = _psql(stack, f"SELECT kb_type, embed_info::text FROM knowledge_bases WHERE db_id = '{db_id}'")
    assert len(stored) == 1 and stored[0].startswith("milvus|") and EMBED_MODEL in stored[0], stored
    # And where a user goes: nginx, whichever replica answers.
    assert db_id in {
        str(d["db_id"])
        for d in stack.client("get", "/api/knowledge/databases", token=_token(stack))["body"]["databases"]
    }


def test_a_document_indexed_through_one_replica_is_found_by_a_query_on_the_other(
    stack: AppStack, run_dir: Path
) -> None:
    a, b = _pinned(stack)
    db_id = KNOWLEDGE["db_id"]
    uploaded = _on(
        stack,
        a,
        "upload-text",
        f"/api/knowledge/files/upload?db_id={db_id}",
        "--name",
        "lighthouse.md",
        "--text",
        DOCUMENT,
    )
    assert uploaded["status"] == 200, uploaded
    started = time.monotonic()
    _index(stack, a, db_id, uploaded["body"])

    def indexed_on_both() -> bool:
        views = [_kb_files(stack, base, db_id) for base in (a, b)]
        for files in views:
            failed = {
                k: f.get("status") for k, f in files.items() if str(f.get("status", "")).startswith("error")
            }
            assert not failed, failed
        return all(files and all(f.get("status") == "indexed" for f in files.values()) for files in views)

    poll("the document to be indexed, as both replicas say", indexed_on_both, 300, interval=2)
    (file_id,) = _kb_files(stack, b, db_id)
    assert _kb_files(stack, a, db_id).keys() == {file_id}
    KNOWLEDGE["file_id"] = file_id
    query = json.dumps({"query": "Who cleans the Harbour Lighthouse lamp?", "meta": {}})
    answer = _on(stack, b, "post", f"/api/knowledge/databases/{db_id}/query", query)
    assert answer["status"] == 200, answer
    assert "Coastal Guild" in json.dumps(answer["body"]), answer
    # From the add through A to an answer on B (the polls above are every 2 s: an upper bound).
    FIGURES["document_queryable_on_b_s"] = round(time.monotonic() - started, 1)
    _write_figures(run_dir, "document.json", {"added_to_answer_on_b_s": FIGURES["document_queryable_on_b_s"]})


def test_an_agent_on_the_other_replica_answers_from_the_knowledge_base_tool(stack: AppStack) -> None:
    """The chat agent, given the knowledge base replica a made, asked on replica b: the stand-in
    calls ``query_kb`` when a message names a knowledge base in quotes, and answers with its result."""
    _, b = _pinned(stack)
    token = _token(stack)
    configs = stack.client("get", "/api/chat/agent/ChatbotAgent/configs", token=token)
    config_id = configs["body"]["configs"][0]["id"]
    path = f"/api/chat/agent/ChatbotAgent/configs/{config_id}"
    context = {"model": "standin/standin-chat", "tools": [], "knowledges": [KNOWLEDGE["name"]]}
    given = stack.client("put", path, json.dumps({"config_json": {"context": context}}), token=token)
    assert given["status"] == 200, given
    try:
        name = KNOWLEDGE["name"]
        query = f'What does the knowledge base "{name}" say about who cleans the Harbour Lighthouse lamp?'
        answer = stack.client("chat", "--config-id", str(config_id), "--query", query, base=b, token=token)
    finally:
        context["knowledges"] = []
        stack.client("put", path, json.dumps({"config_json": {"context": context}}), token=token)
    assert answer["status"] == 200, answer
    assert answer["text"].startswith("stand-in answer from query_kb"), answer
    assert "Coastal Guild" in answer["text"], answer


def test_a_deleted_file_and_knowledge_base_stay_deleted_after_the_other_replica_edits(
    stack: AppStack,
) -> None:
    a, b = _pinned(stack)
    db_id, file_id = KNOWLEDGE["db_id"], KNOWLEDGE["file_id"]
    doomed = _make_kb(stack, a, f"doomed-{RUN_ID}")
    assert doomed in _kb_ids(stack, b)
    gone = _on(stack, a, "delete", f"/api/knowledge/databases/{db_id}/documents/{file_id}")
    assert gone["status"] == 200, gone
    dropped = _on(stack, a, "delete", f"/api/knowledge/databases/{doomed}")
    assert dropped["status"] == 200, dropped
    # B edits the knowledge base that held the file: each save writes B's view of it back.
    params = _on(stack, b, "put", f"/api/knowledge/databases/{db_id}/query-params", json.dumps({"top_k": 3}))
    assert params["status"] == 200, params
    renamed = f"{KNOWLEDGE['name']}-renamed"
    edit = json.dumps({"name": renamed, "description": "renamed on b"})
    assert _on(stack, b, "put", f"/api/knowledge/databases/{db_id}", edit)["status"] == 200
    KNOWLEDGE["name"] = renamed
    for base in (a, b):
        assert _kb_files(stack, base, db_id) == {}, f"the deleted file is back on {base}"
        ids = _kb_ids(stack, base)
        assert db_id in ids and doomed not in ids, (base, ids)
        assert _on(stack, base, "get", f"/api/knowledge/databases/{doomed}")["status"] == 404
        assert _on(stack, base, "get", f"/api/knowledge/databases/{db_id}")["body"]["name"] == renamed
    # The application's own tables.
    assert _psql(stack, f"SELECT db_id FROM knowledge_bases WHERE db_id = '{doomed}'") == []
    assert _psql(stack, f"SELECT name FROM knowledge_bases WHERE db_id = '{db_id}'") == [renamed]
    assert _psql(stack, f"SELECT file_id FROM knowledge_files WHERE db_id IN ('{db_id}', '{doomed}')") == []


def _add_document(stack: AppStack, base: str, db_id: str, name: str, text: str) -> None:
    path = f"/api/knowledge/files/upload?db_id={db_id}"
    uploaded = _on(stack, base, "upload-text", path, "--name", name, "--text", text)
    assert uploaded["status"] == 200, uploaded
    _index(stack, base, db_id, uploaded["body"])


def test_a_lightrag_knowledge_base_fed_through_both_replicas_finds_entities_of_every_document(
    stack: AppStack,
) -> None:
    a, b = _pinned(stack)
    token = _token(stack)
    # LightRAG's LLM: the knowledge base's llm_info names the stand-in provider scenario 5 relies on.
    setting = json.dumps({"key": "default_model", "value": "standin/standin-chat"})
    assert stack.client("post", "/api/system/config", setting, token=token)["status"] == 200
    llm_info = {"provider": "standin", "model_name": "standin-chat"}
    db_id = _make_kb(stack, a, f"graph-{RUN_ID}", kb_type="lightrag", llm_info=llm_info)
    for base, (name, text) in zip((a, b), GRAPH_DOCUMENTS.items(), strict=True):
        _add_document(stack, base, db_id, name, text)

    def indexed_on_both() -> bool:
        views = [_kb_files(stack, base, db_id) for base in (a, b)]
        for files in views:
            failed = {
                k: f.get("status") for k, f in files.items() if str(f.get("status", "")).startswith("error")
            }
            assert not failed, failed
        return all(
            len(files) == 2 and all(f.get("status") == "indexed" for f in files.values()) for files in views
        )

    poll("both documents to be indexed, as both replicas say", indexed_on_both, 600, interval=3)
    query = json.dumps({"query": "Coastal Guild and Astral Society", "meta": {}})
    for base in (a, b):
        answer = _on(stack, base, "post", f"/api/knowledge/databases/{db_id}/query", query)
        assert answer["status"] == 200, answer
        found = json.dumps(answer["body"]).lower()
        for entity in ("coastal guild", "astral society"):
            assert entity in found, (base, entity, answer["body"])


# --- 5f. a graph upload and query across replicas (row 5) ------------------------------------
OTHER_EMBED_MODEL = "ollama/bge-m3"  # in the catalogue, served by nothing in the pods


def _graph_triples(tag: str) -> dict[str, list[dict[str, str]]]:
    """The triples each replica uploads: names of one token each (the query splits on spaces),
    unique to the run (the graph is the stack's one Neo4j)."""
    return {
        "a": [
            {"h": f"Keeper{tag}", "r": "tends", "t": f"Lamp{tag}"},
            {"h": f"Lamp{tag}", "r": "stands_in", "t": f"Harbour{tag}"},
        ],
        "b": [{"h": f"Astronomer{tag}", "r": "polishes", "t": f"Telescope{tag}"}],
    }


def _upload_graph(stack: AppStack, base: str, name: str, triples: list[dict[str, str]], model: str) -> float:
    """Triples uploaded as JSONL and added to the graph, both through *base*, as the graph page
    does; returns the time the add answered (monotonic)."""
    jsonl = "".join(json.dumps(t) + "\n" for t in triples)
    path = "/api/knowledge/files/upload?allow_jsonl=true"  # no db_id: the graph's own upload
    uploaded = _on(stack, base, "upload-text", path, "--name", name, "--text", jsonl)
    assert uploaded["status"] == 200, uploaded
    body = {"file_path": uploaded["body"]["file_path"], "kgdb_name": "neo4j", "embed_model_name": model}
    added = _on(stack, base, "post", "/api/graph/neo4j/add-entities", json.dumps(body))
    assert added["status"] == 200 and added["body"].get("status") == "success", added
    return time.monotonic()


def _graph_info(stack: AppStack, base: str) -> dict[str, Any]:
    info = _on(stack, base, "get", "/api/graph/neo4j/info")
    assert info["status"] == 200, info
    return dict(info["body"]["data"])


def _subgraph(stack: AppStack, base: str, entity: str) -> dict[str, Any]:
    """The graph page's query for one entity (vector and name match, two hops)."""
    found = _on(stack, base, "get", f"/api/graph/subgraph?db_id=neo4j&node_label={entity}&max_depth=2")
    assert found["status"] == 200, found
    return dict(found["body"]["data"])


def _edges_by_name(graph: dict[str, Any]) -> set[tuple[str, str, str]]:
    """The subgraph's edges as (head name, relation, tail name)."""
    names = {n["id"]: n["name"] for n in graph["nodes"]}
    return {
        (names.get(e["source_id"], "?"), e["type"], names.get(e["target_id"], "?")) for e in graph["edges"]
    }


def _embedded_by_sidecar(stack: AppStack, base: str) -> int:
    """Texts the replica's own embedding stand-in (its sidecar) embedded with EMBED_MODEL."""
    pod = {f"http://{ip}:5050": name for name, ip in stack.api_pods().items()}[base]
    stats = (
        "python3",
        "-m",
        "yuxi_k8s.probes.app_client",
        "--base",
        "http://127.0.0.1:8000",
        "get",
        "/stats",
    )
    out = stack.kube.exec(stack.namespace, pod, *stats, container="embeddings-standin").stdout
    body = json.loads(out.strip().splitlines()[-1])["body"]
    return int(body.get(f"embeddings:{EMBED_MODEL.rpartition('/')[2]}", 0))


def test_a_graph_uploaded_through_one_replica_is_queried_and_extended_through_the_other(
    stack: AppStack, run_dir: Path
) -> None:
    """The graph page's upload on a (its first upload fixes the embedding model), queried on b
    before b ever read the graph's info; then b's upload, asking for another model, embeds with
    a's (row 5), and a finds b's entities."""
    a, b = _pinned(stack)
    tag = RUN_ID.replace("-", "")
    triples = _graph_triples(tag)
    before = _graph_info(stack, a)
    added_a = _upload_graph(stack, a, f"harbour-{tag}.jsonl", triples["a"], EMBED_MODEL)

    # On b: the query first (what b's graph page or agent asks), then the graph's info and list.
    def b_finds_the_keeper() -> dict[str, Any] | None:
        graph = _subgraph(stack, b, f"Keeper{tag}")
        return graph if (f"Keeper{tag}", "tends", f"Lamp{tag}") in _edges_by_name(graph) else None

    graph = poll("replica b's query to find a's triple", b_finds_the_keeper, 60, interval=0.5)
    a_to_b_s = time.monotonic() - added_a
    assert {f"Keeper{tag}", f"Lamp{tag}", f"Harbour{tag}"} <= {n["name"] for n in graph["nodes"]}, graph
    assert (f"Lamp{tag}", "stands_in", f"Harbour{tag}") in _edges_by_name(graph), graph  # the second hop
    info = _graph_info(stack, b)
    assert (info["embed_model_name"], info["embed_model_configurable"]) == (EMBED_MODEL, False), info
    assert info["entity_count"] - before["entity_count"] == 3, (before, info)
    assert info["relationship_count"] - before["relationship_count"] == 2, (before, info)
    assert info["unindexed_node_count"] == 0, info  # every entity embedded
    # The graph page's list counts the same (v0.6.1's /api/graph/stats answers {} for this graph:
    # it calls the async is_lightrag_database without await, so it never reaches Neo4j's counts).
    listed = _on(stack, b, "get", "/api/graph/list")
    assert listed["status"] == 200, listed
    (default,) = [g for g in listed["body"]["data"] if g["id"] == "neo4j"]
    assert (default["node_count"], default["edge_count"]) == (
        info["entity_count"],
        info["relationship_count"],
    ), default

    # On b: a second upload asking for another model: the graph's model, fixed by a, is used.
    embedded_before = _embedded_by_sidecar(stack, b)
    added_b = _upload_graph(stack, b, f"observatory-{tag}.jsonl", triples["b"], OTHER_EMBED_MODEL)
    embedded_on_b = _embedded_by_sidecar(stack, b) - embedded_before

    def a_finds_the_astronomer() -> dict[str, Any] | None:
        graph = _subgraph(stack, a, f"Astronomer{tag}")
        return graph if (f"Astronomer{tag}", "polishes", f"Telescope{tag}") in _edges_by_name(graph) else None

    poll("replica a's query to find b's triple", a_finds_the_astronomer, 60, interval=0.5)
    b_to_a_s = time.monotonic() - added_b
    assert embedded_on_b >= 2, embedded_on_b  # b's two entities, embedded with the graph's model
    for base in (a, b):
        info = _graph_info(stack, base)
        assert (info["embed_model_name"], info["embed_model_configurable"]) == (EMBED_MODEL, False), info
        assert info["entity_count"] - before["entity_count"] == 5, (base, before, info)
        assert info["unindexed_node_count"] == 0, (base, info)
    figure = {
        "a_add_to_b_query_s": round(a_to_b_s, 2),
        "b_add_to_a_query_s": round(b_to_a_s, 2),
        "embedded_on_b_with_the_graphs_model": embedded_on_b,
        "entities_added": info["entity_count"] - before["entity_count"],
        "embed_model": EMBED_MODEL,
    }
    FIGURES["graph"] = figure
    _write_figures(run_dir, "graph.json", figure)
    print(f"\ngraph: {json.dumps(figure)}")


# --- 6. failover under load ---------------------------------------------------------------------
def _start_load(stack: AppStack, name: str) -> None:
    command = [
        "python3", "-m", "yuxi_k8s.probes.loadgen", "--url", "http://api:5050/api/system/config",
        "--rate", str(LOAD_RATE), "--duration", str(LOAD_SECONDS),
        "--header", f"Authorization: Bearer {_token(stack)}",
    ]  # fmt: skip
    pod = client_pod(name, stack.client_image, command)
    stack.kube.run(
        "delete", "pod", name, "--ignore-not-found", "--wait=true", ns=stack.namespace
    )  # a reused stack
    stack.kube.apply([pod], ns=stack.namespace)

    def started() -> bool:
        log = stack.kube.run("logs", name, ns=stack.namespace, check=False).stdout
        return '"event": "started"' in log

    poll(f"load generator {name} to start", started, 120)
    time.sleep(3)  # steady state before the disruption


def _finish_load(stack: AppStack, name: str) -> dict[str, Any]:
    log = wait_pod_succeeded(stack.kube, stack.namespace, name, timeout=LOAD_SECONDS + 90)
    summaries = [json.loads(line) for line in log.splitlines() if '"event": "summary"' in line]
    assert summaries, f"no summary in the load generator's log:\n{log[-2000:]}"
    return dict(summaries[-1])


def _record_failover(
    run_dir: Path, scenario: str, summary: dict[str, Any], recovery_s: float
) -> dict[str, Any]:
    figure = {
        "requests": summary["sent"],
        "ok": summary["ok"],
        "failed": summary["failed"],
        "errors": summary["errors"],
        "time_to_full_replicas_s": round(recovery_s, 1),
        "served_by": summary["served_by"],
        "rate_per_s": LOAD_RATE,
        "load_duration_s": summary["duration_s"],
        "warmup_failures": summary.get("warmup_failures", 0),  # before the first success: not counted
    }
    failover = FIGURES.setdefault("failover", {})
    failover[scenario] = figure
    _write_figures(run_dir, "failover.json", failover)
    print(f"\nfailover {scenario}: {json.dumps(figure)}")
    return figure


def _full(stack: AppStack, extra: Callable[[list[dict[str, Any]]], bool] | None = None) -> bool:
    if not stack.kube.deployment_complete(stack.namespace, "api"):
        return False
    pods = [p for p in stack.kube.pods(stack.namespace, API) if not p["metadata"].get("deletionTimestamp")]
    want = stack.kube.json("get", "deployment", "api", ns=stack.namespace)["spec"]["replicas"]
    return len(pods) == want and all(is_ready(p) for p in pods) and (extra is None or extra(pods))


@pytest.mark.core
def test_failover_when_an_api_pod_is_deleted(stack: AppStack, run_dir: Path) -> None:
    stack.kube.wait_deployment(stack.namespace, "api", 300)
    victim = sorted(stack.api_pods())[0]
    _start_load(stack, "load-delete")
    t0 = time.monotonic()
    stack.kube.run("delete", "pod", victim, "--wait=false", ns=stack.namespace)
    poll(
        "api back to full replicas without the deleted pod",
        lambda: _full(stack, lambda pods: victim not in {p["metadata"]["name"] for p in pods}),
        300,
        interval=0.5,
    )
    recovered_s = time.monotonic() - t0  # before the wait for the load to end
    figure = _record_failover(run_dir, "pod_deleted", _finish_load(stack, "load-delete"), recovered_s)
    assert figure["failed"] == 0, figure


def _container_pids(container_id: str) -> list[int]:
    """Host pids of a container: the processes whose cgroup path names its id."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if container_id in (entry / "cgroup").read_text():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def test_failover_when_an_api_container_is_killed_with_sigkill(stack: AppStack, run_dir: Path) -> None:
    stack.kube.wait_deployment(stack.namespace, "api", 300)
    victim = sorted(stack.api_pods())[0]
    pod = stack.kube.json("get", "pod", victim, ns=stack.namespace)
    status = next(c for c in pod["status"]["containerStatuses"] if c["name"] == "api")
    container_id = status["containerID"].split("://", 1)[-1]
    restarts = status.get("restartCount", 0)
    require(
        bool(_container_pids(container_id)) and os.geteuid() == 0,
        "the api container's processes on this host (provider local, or existing on this machine, as root)",
    )
    _start_load(stack, "load-sigkill")
    t0 = time.monotonic()
    for pid in _container_pids(container_id):
        os.kill(pid, signal.SIGKILL)

    def restarted(pods: list[dict[str, Any]]) -> bool:
        for p in pods:
            if p["metadata"]["name"] == victim:
                cs = next(c for c in p["status"]["containerStatuses"] if c["name"] == "api")
                return bool(cs.get("restartCount", 0) > restarts)
        return False

    poll("the killed api container to be restarted and ready", lambda: _full(stack, restarted), 300, 0.5)
    recovered_s = time.monotonic() - t0  # before the wait for the load to end
    figure = _record_failover(run_dir, "container_sigkill", _finish_load(stack, "load-sigkill"), recovered_s)
    # Reported, not a target: requests in flight on the killed process, and new connections
    # sent to it before the kubelet marks it not ready, fail.
    assert figure["ok"] > 0


def test_failover_during_a_rolling_restart(stack: AppStack, run_dir: Path) -> None:
    stack.kube.wait_deployment(stack.namespace, "api", 300)
    before = set(stack.api_pods())
    _start_load(stack, "load-rollout")
    t0 = time.monotonic()
    stack.kube.run("rollout", "restart", "deployment/api", ns=stack.namespace)
    poll(
        "the rolling restart to replace every api pod",
        lambda: _full(stack, lambda pods: not before & {p["metadata"]["name"] for p in pods}),
        420,
        interval=0.5,
    )
    recovered_s = time.monotonic() - t0  # before the wait for the load to end
    figure = _record_failover(run_dir, "rolling_restart", _finish_load(stack, "load-rollout"), recovered_s)
    assert figure["failed"] == 0, figure


# --- 7. a rolling restart while a task runs ------------------------------------------------------
def test_a_rolling_restart_keeps_a_task_running_on_the_other_replica(stack: AppStack, run_dir: Path) -> None:
    kube, ns = stack.kube, stack.namespace
    kube.wait_deployment(ns, "api", 300)
    pods = stack.api_pods()
    owner = sorted(pods)[0]
    token = _token(stack)
    base = f"http://{pods[owner]}:5050"
    started = stack.client(
        "post", "/api/yuxi-k8s/test/tasks", json.dumps({"seconds": 40}), base=base, token=token
    )
    assert started["status"] == 200 and started["body"]["replica"] == owner, started
    task_path = f"/api/tasks/{started['body']['task_id']}"
    before = set(pods)
    t0 = time.monotonic()
    kube.run("rollout", "restart", "deployment/api", ns=ns)
    seen: list[str] = []

    def status() -> str:
        answer = stack.client("get", task_path, base="http://api:5050", token=token)
        task = answer["body"].get("task", answer["body"])
        return str(task["status"]) if answer["status"] == 200 else f"http {answer['status']}"

    def replaced() -> bool:
        now = status()
        if not seen or seen[-1] != now:
            seen.append(now)
        return _full(stack, lambda p: not before & {x["metadata"]["name"] for x in p})

    poll("the rolling restart to replace both api pods", replaced, 420, interval=1)
    # The owner may still be draining (terminating pods leave the Deployment's count at once):
    # the task ends while its pod finishes it, up to YUXI_K8S_TASK_DRAIN_SECONDS.
    poll("the task to end", lambda: status() in ("success", "failed", "cancelled"), 180, interval=2)
    final = status()
    FIGURES["task_across_rollout"] = {
        "statuses": seen,
        "final": final,
        "rollout_s": round(time.monotonic() - t0, 1),
    }
    _write_figures(run_dir, "tasks.json", FIGURES["task_across_rollout"])
    assert final == "success", FIGURES["task_across_rollout"]
    assert "failed" not in seen, seen


# --- 7c. sandboxes for real: the provisioner's kubernetes backend (issues 18 and 20) -------------
SANDBOX_THREAD = "e2e-sandbox-thread"
SANDBOX_FILE = "/home/gem/user-data/workspace/e2e-note.txt"
SANDBOX_NOTE = "written in the sandbox through one replica"
PROVISIONER = "http://sandbox-provisioner:8002"


def _in_sandbox(stack: AppStack, base: str, **body: Any) -> dict[str, Any]:
    """The thread's sandbox through the replica at *base*, and what the app's tools do there."""
    answer = stack.client(
        "post",
        "/api/yuxi-k8s/test/sandbox",
        json.dumps({"thread_id": SANDBOX_THREAD, **body}),
        base=base,
        token=_token(stack),
    )
    assert answer["status"] == 200, answer
    return dict(answer["body"])


def _ask_provisioner(stack: AppStack, api_pod: str, method: str, path: str, body: Any = None) -> Any:
    """The provisioner's own API from an api pod (the policies let only the api, the worker and
    nothing else reach it): {"status", "body"}."""
    code = (
        "import json, sys, urllib.error, urllib.request\n"
        "method, url, body = sys.argv[1], sys.argv[2], sys.argv[3]\n"
        "data = body.encode() if body != 'null' else None\n"
        "req = urllib.request.Request(url, data=data, method=method, "
        "headers={'Content-Type': 'application/json'})\n"
        "try:\n"
        "    with urllib.request.urlopen(req, timeout=120) as r: out = (r.status, r.read())\n"
        "except urllib.error.HTTPError as e: out = (e.code, e.read())\n"
        "print(json.dumps({'status': out[0], 'body': json.loads(out[1] or b'null')}))\n"
    )
    args = ("python3", "-c", code, method, f"{PROVISIONER}{path}", json.dumps(body))
    out = stack.kube.exec(stack.namespace, api_pod, *args, container="api", timeout=180)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _refused_as_provisioner(stack: AppStack, manifest: dict[str, Any]) -> str:
    """A create of *manifest* in the sandboxes' namespace as the provisioner's account
    (impersonated; server-side dry run: admission runs, nothing is stored): kubectl's error."""
    sbx = sandbox_namespace(stack.namespace)
    account = f"system:serviceaccount:{stack.namespace}:sandbox-provisioner"
    body = json.dumps(manifest)
    done = stack.kube.run(
        "create", "--as", account, "--dry-run=server", "-f", "-", ns=sbx, input=body, check=False
    )
    return done.stderr.strip() if done.returncode else ""


@pytest.mark.usefixtures("network_policy")
def test_a_sandbox_pod_made_through_one_replica_serves_the_other_and_outlives_a_rollout(
    stack: AppStack, run_dir: Path, make_namespace: Callable[..., str]
) -> None:
    """The provisioner's kubernetes backend with the kit's entry point: a real sandbox pod and
    ClusterIP Service in the sandboxes' namespace; a file written by the app's sandbox backend
    through replica a is read (file API and shell) through replica b; only the app's pods reach
    the sandbox; the admission policy refuses what the provisioner's Role would otherwise allow;
    a user's sandboxes are limited; and a rolling restart of the api leaves the sandbox alone."""
    kube, ns = stack.kube, stack.namespace
    sbx = sandbox_namespace(ns)
    kube.wait_deployment(ns, "api", 300)
    pods = stack.api_pods()
    a, b = sorted(pods)[:2]
    figures: dict[str, Any] = {}

    t0 = time.monotonic()
    made = _in_sandbox(stack, f"http://{pods[a]}:5050", write={"path": SANDBOX_FILE, "content": SANDBOX_NOTE})
    figures["create_and_write_s"] = round(time.monotonic() - t0, 1)
    assert made["replica"] == a and made["written"]["error"] is None, made
    name = f"sandbox-{made['sandbox_id']}"
    pod = kube.json("get", "pod", name, ns=sbx)
    service = kube.json("get", "service", name, ns=sbx)
    assert pod["status"]["phase"] == "Running", pod["status"]
    assert service["spec"]["type"] == "ClusterIP" and not service["spec"].get("externalIPs"), service["spec"]
    url = f"http://{name}.{sbx}.svc:8080"
    record = _ask_provisioner(stack, a, "GET", f"/api/sandboxes/{made['sandbox_id']}")
    assert record["status"] == 200 and record["body"]["sandbox_url"] == url, record

    read = _in_sandbox(stack, f"http://{pods[b]}:5050", read=SANDBOX_FILE, execute=f"cat {SANDBOX_FILE}")
    assert read["replica"] == b and read["sandbox_id"] == made["sandbox_id"], read
    assert SANDBOX_NOTE in read["read"] and SANDBOX_NOTE in read["executed"]["output"], read

    # Who reaches the sandbox: the api; not a pod of the namespace that is none of api, worker,
    # provisioner; not a pod of another namespace, by the Service or the pod's address.
    target, direct = f"{name}.{sbx}.svc:8080", f"{pod['status']['podIP']}:8080"
    other = make_namespace("outside")
    outsider = client_pod("e2e-outsider", stack.client_image, ["sleep", "3600"], role="stranger")
    kube.apply([outsider], ns=other)
    poll("the outsider pod", lambda: is_ready(kube.json("get", "pod", "e2e-outsider", ns=other)), 300)
    outside = kube.exec(
        other,
        "e2e-outsider",
        "python3",
        "-m",
        "yuxi_k8s.probes.app_client",
        "tcp",
        target,
        direct,
        timeout=60,
    )
    reach = {
        "api": _probe(stack, a, "api", [target]),
        "client in the app's namespace": _probe(stack, "e2e-client", "main", [target, direct]),
        "pod in another namespace": list(json.loads(outside.stdout.strip().splitlines()[-1]).values()),
    }
    figures["reach"] = reach
    assert reach["api"] == ["open"], reach
    assert "open" not in reach["client in the app's namespace"] + reach["pod in another namespace"], reach

    # What the provisioner's account may create: only the kit's sandbox shapes.
    labels = {"app": "yuxi-sandbox", "sandbox-id": "e2e-forbidden"}
    spec = {k: v for k, v in pod["spec"].items() if k not in ("nodeName", "tolerations")}
    as_made = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "e2e-allowed", "labels": labels},
        "spec": spec,
    }
    assert _refused_as_provisioner(stack, as_made) == "", "the sandbox pod's own shape was refused"
    other_image = json.loads(json.dumps(as_made))
    other_image["spec"]["containers"][0]["image"] = stack.client_image
    on_a_node = json.loads(json.dumps(as_made))
    on_a_node["spec"]["nodeName"] = pod["spec"]["nodeName"]
    other_claim = json.loads(json.dumps(as_made))
    for volume in other_claim["spec"]["volumes"]:
        if "persistentVolumeClaim" in volume:
            volume["persistentVolumeClaim"]["claimName"] = "saves"
    service_spec = {"selector": {"sandbox-id": "e2e-forbidden"}, "ports": [{"port": 8080}]}
    node_port = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "e2e-np", "labels": labels},
        "spec": {**service_spec, "type": "NodePort"},
    }
    external = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "e2e-ext", "labels": labels},
        "spec": {**service_spec, "externalIPs": ["192.0.2.10"]},
    }
    refused = {
        what: _refused_as_provisioner(stack, manifest)
        for what, manifest in {
            "another image": other_image,
            "nodeName": on_a_node,
            "another claim": other_claim,
            "NodePort Service": node_port,
            "externalIPs": external,
        }.items()
    }
    figures["refused"] = refused
    for what, error in refused.items():
        assert "ValidatingAdmissionPolicy" in error and f"{sbx}.sandbox-provisioner" in error, (what, error)

    # One user's sandboxes: YUXI_K8S_SANDBOXES_PER_USER (3) at once, the admin has one already.
    user = pod["metadata"]["annotations"]["user-id"]
    extra = [f"e2e-limit-{n}" for n in range(3)]
    answers = [
        _ask_provisioner(
            stack, a, "POST", "/api/sandboxes", {"sandbox_id": sid, "thread_id": sid, "user_id": user}
        )
        for sid in extra
    ]
    figures["per_user"] = [(x["status"], x["body"].get("detail", "")) for x in answers]
    for sid in extra:
        _ask_provisioner(stack, a, "DELETE", f"/api/sandboxes/{sid}")
    assert [x["status"] for x in answers] == [200, 200, 400], figures["per_user"]
    assert "YUXI_K8S_SANDBOXES_PER_USER=3" in answers[2]["body"]["detail"], answers[2]

    # A rolling restart of the api: the replicas that stop leave the sandbox (row 11) and the
    # new ones use it.
    before = set(pods)
    t1 = time.monotonic()
    kube.run("rollout", "restart", "deployment/api", ns=ns)
    poll(
        "the rolling restart to replace both api pods",
        lambda: _full(stack, lambda p: not before & {x["metadata"]["name"] for x in p}),
        420,
        interval=1,
    )
    figures["rollout_s"] = round(time.monotonic() - t1, 1)
    after = kube.json("get", "pod", name, ns=sbx)
    assert after["metadata"]["uid"] == pod["metadata"]["uid"], "the sandbox pod was replaced"
    fresh = sorted(stack.api_pods())[0]
    again = _in_sandbox(stack, f"http://{stack.api_pods()[fresh]}:5050", read=SANDBOX_FILE)
    assert again["sandbox_id"] == made["sandbox_id"] and SANDBOX_NOTE in again["read"], again
    _ask_provisioner(stack, fresh, "DELETE", f"/api/sandboxes/{made['sandbox_id']}")
    _write_figures(run_dir, "sandboxes.json", figures)


# --- 8. NetworkPolicies with the real app ----------------------------------------------------------
def _pod_of(stack: AppStack, component: str) -> str:
    pods = stack.kube.ready_pods(stack.namespace, f"app.kubernetes.io/component={component}")
    assert pods, f"no ready {component} pod"
    return str(pods[0]["metadata"]["name"])


def _probe(stack: AppStack, pod: str, container: str, targets: list[str]) -> list[str]:
    """TCP connects from *pod* (HOST:PORT each); web (nginx, no Python) tries with bash's /dev/tcp."""
    if container == "web":
        out = []
        for target in targets:
            host, port = target.split(":")
            script = f"timeout 3 bash -c '</dev/tcp/{host}/{port}' && echo open"
            res = stack.kube.exec(
                stack.namespace, pod, "bash", "-c", script, container=container, check=False
            )
            out.append("open" if "open" in res.stdout else "refused")
        return out
    args = ["python3", "-m", "yuxi_k8s.probes.app_client", "tcp", *targets]
    res = stack.kube.exec(stack.namespace, pod, *args, container=container, timeout=60)
    found = json.loads(res.stdout.strip().splitlines()[-1])
    return [found[t] for t in targets]


# --- 7b. an answer in flight across a rolling restart of the api (row 17) -----------------------
ROLLOUT_WORDS = 600  # 120 s at the stand-in's 0.2 s a word: longer than the api's rollout here


def test_an_answer_read_through_the_web_survives_a_rolling_restart_of_the_api(
    stack: AppStack, run_dir: Path
) -> None:
    """A chat answer as the kit's web page reads it (the runs API: the worker answers, the events
    come back through any api replica), through the web Service, while every api pod is replaced:
    the reader reconnects from its last seq and gets the whole answer, each event once."""
    stack.kube.wait_deployment(stack.namespace, "api", 300)
    query = " ".join(f"word{n}" for n in range(ROLLOUT_WORDS))
    with stack.kube.port_forward(stack.namespace, "service/web", 80) as base:
        form = {"username": ADMIN["user_id"], "password": ADMIN["password"]}
        token = httpx.post(f"{base}/api/auth/token", data=form, timeout=30).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        agent = f"{base}/api/chat/agent/ChatbotAgent"
        config_id = httpx.get(f"{agent}/configs", headers=auth, timeout=30).json()["configs"][0]["id"]
        plain = {"model": "standin/standin-chat", "tools": [], "knowledges": []}  # no tools: one answer
        context = {"config_json": {"context": plain}}
        put = httpx.put(f"{agent}/configs/{config_id}", headers=auth, json=context, timeout=30)
        assert put.status_code == 200, put.text
        thread = httpx.post(
            f"{base}/api/chat/thread", headers=auth, json={"agent_id": "ChatbotAgent", "title": "rollout"}
        )
        assert thread.status_code == 200, thread.text
        body = {"query": query, "agent_config_id": config_id, "thread_id": thread.json()["id"]}
        made = httpx.post(
            f"{base}/api/chat/runs", headers=auth, json={**body, "meta": {"request_id": RUN_ID}}, timeout=30
        )
        assert made.status_code == 200, made.text
        reader = RunReader(str(made.json()["run_id"]), auth)
        started = time.monotonic()
        marks: dict[str, float] = {}

        def restart_after_five_words(words: int) -> None:
            if words == 5 and "restart" not in marks:
                stack.kube.run("rollout", "restart", "deployment/api", ns=stack.namespace)
                marks["restart"] = time.monotonic() - started

        reads = 0
        while reader.ended is None and time.monotonic() - started < 600:
            reads += 1  # each read after the first is the page's reconnect from its last seq
            try:
                reader.read(base, restart_after_five_words)
            except httpx.HTTPError:  # cut, or no api ready behind nginx for a moment
                time.sleep(0.5)  # the page's own pause before it reconnects (useAgentRunStream.js)
        marks["answered"] = time.monotonic() - started
        stack.kube.run("rollout", "status", "deployment/api", "--timeout=300s", ns=stack.namespace)
        marks["rolled_out"] = time.monotonic() - started
    figure = {
        "words": ROLLOUT_WORDS,
        "reconnects": reads - 1,
        "events": len(reader.taken),
        **{f"{k}_s": round(v, 1) for k, v in marks.items()},
    }
    FIGURES["answer_across_rollout"] = figure
    _write_figures(run_dir, "answer_across_rollout.json", figure)
    print(f"\nanswer_across_rollout: {json.dumps(figure)}")
    assert "restart" in marks, "the answer ended before its fifth word"
    assert reader.ended == "finished", figure
    assert reader.text == f"stand-in answer: {query}", reader.text[-200:]


# --- 8. a user in a real browser, through the web Service ------------------------------------
def test_a_user_in_a_browser_builds_a_knowledge_base_through_the_web_service(
    stack: AppStack, run_dir: Path, tmp_path: Path
) -> None:
    """The browser journey of the app tier (tests/browser/knowledge_journey.py) on the cluster:
    headless Chromium on this machine opens the web Service as a user would from theirs
    (``kubectl port-forward service/web``); the web's nginx sends the API calls through the api
    Service to both replicas. One api pod is deleted after the agent's answer; the conversation,
    the knowledge base and its document are all still there after a reload, and the agent answers
    again. Screenshots and journey.txt in the run folder (browser-journey/)."""
    stack.kube.wait_deployment(stack.namespace, "api", 300)
    token = _token(stack)
    # The site's models: the stand-in answers, titles and embeds (as an operator sets them).
    for key, value in (
        ("fast_model", CHAT_MODEL),
        ("default_model", CHAT_MODEL),
        ("embed_model", EMBED_MODEL),
    ):
        setting = json.dumps({"key": key, "value": value})
        assert stack.client("post", "/api/system/config", setting, token=token)["status"] == 200

    def lose_one_replica() -> None:
        victim = sorted(stack.api_pods())[0]
        stack.kube.run("delete", "pod", victim, "--wait=false", ns=stack.namespace)

    admin = (ADMIN["user_id"], ADMIN["password"])
    with (
        stack.kube.port_forward(stack.namespace, "service/web", 80) as base,
        # The app's object URLs (the admin's avatar of scenario 4) name the web host's port 9000.
        stack.kube.port_forward(stack.namespace, "service/web", 9000) as objects,
        journey(run_dir / "browser-journey", sites={f"{WEB_HOST}:9000": objects}) as seen,
    ):
        first_knowledge_base(seen, base, admin, tmp_path, lose_one_replica)
    stack.kube.wait_deployment(stack.namespace, "api", 300)


@pytest.mark.usefixtures("network_policy")
def test_network_policies_allow_the_apps_flows_and_refuse_the_rest(stack: AppStack) -> None:
    api, worker, web = _pod_of(stack, "api"), _pod_of(stack, "worker"), _pod_of(stack, "web")
    stack.start_idle_pod("e2e-stranger", role="stranger")
    deps = ["postgres:5432", "redis:6379", "minio:9000", "sandbox-provisioner:8002", "model-standin:8000"]
    deps += ["milvus:19530", "neo4j:7687"]
    results = {
        "api->deps": _probe(stack, api, "api", deps),
        "worker->postgres,redis,model,milvus,neo4j": _probe(
            stack,
            worker,
            "worker",
            ["postgres:5432", "redis:6379", "model-standin:8000", "milvus:19530", "neo4j:7687"],
        ),
        "web->api,minio": _probe(stack, web, "web", ["api:5050", "minio:9000"]),
        # Flows nobody needs stay closed.
        "web->postgres,redis": _probe(stack, web, "web", ["postgres:5432", "redis:6379"]),
        "stranger->app": _probe(
            stack,
            "e2e-stranger",
            "main",
            ["api:5050", "web:80", "postgres:5432", "redis:6379", "minio:9000", "milvus:19530", "neo4j:7687"],
        ),
        "api->web": _probe(stack, api, "api", ["web:80"]),
        "worker->web": _probe(stack, worker, "worker", ["web:80"]),
    }
    FIGURES["network_policy"] = results
    assert results["api->deps"] == ["open"] * 7, results
    assert results["worker->postgres,redis,model,milvus,neo4j"] == ["open"] * 5, results
    assert results["web->api,minio"] == ["open"] * 2, results
    for flow in ("web->postgres,redis", "stranger->app", "api->web", "worker->web"):
        assert "open" not in results[flow], (flow, results)


# --- 9. file mode and back -------------------------------------------------------------------------
VOLATILE = {"model_provider_status", "valuable_model_provider", "_config_items", "save_dir", "model_dir"}


def _settings(stack: AppStack) -> dict[str, Any]:
    answer = stack.client("get", "/api/system/config", base="http://api:5050", token=_token(stack))
    assert answer["status"] == 200, answer
    return {k: v for k, v in answer["body"].items() if k not in VOLATILE}


def _roll_to(stack: AppStack, name: str, extra: dict[str, Any] | None, components: list[str]) -> AppStack:
    """Apply the run's stack again with *components* (e.g. file-mode) and wait for it."""
    kube, ns = stack.kube, stack.namespace
    tree = stack.run_dir / "tree"
    folder = stack.run_dir / name
    overlay = tree / OVERLAY.relative_to(OVERLAY.parents[2])
    images = {k: v for k, v in (json.loads((stack.run_dir / "images.json").read_text())["images"]).items()}
    built = {kind: image["name"] for kind, image in images.items()}
    doc_extra = dict(extra or {})
    if components:
        doc_extra["components"] = [os.path.relpath(tree / c, folder) for c in components]
    folder = write_kustomization(stack.run_dir, name, [overlay], built, doc_extra)
    manifests = render(folder)
    old = set(stack.api_pods())
    # A Job's pod template is immutable and names the (new) ConfigMap: replace it.
    kube.run("delete", "job", "migrate", "--ignore-not-found", "--wait=true", ns=ns, timeout=180)
    kube.apply(manifests)
    rolled = AppStack(kube, ns, stack.client_image, stack.run_dir, folder, manifests, stack.token)
    rolled.wait_job("migrate", 600)
    poll(
        "the api pods to roll",
        lambda: _full(stack, lambda p: not old & {x["metadata"]["name"] for x in p}),
        600,
    )
    for deployment in ("api", "worker"):
        kube.wait_deployment(ns, deployment, 300)
    return rolled


def test_switch_to_file_mode_and_back_serves_the_same_settings(stack: AppStack, run_dir: Path) -> None:
    before = _settings(stack)
    assert "standin" in before["model_names"], "scenario 5 added the stand-in provider"
    file_mode = _roll_to(stack, "file-mode", None, ["components/file-mode"])
    log = stack.job_log("migrate")
    assert "exported" in log, log[-2000:]
    modes = {}
    for name, ip in stack.api_pods().items():
        ready = stack.client("get", "/api/system/ready", base=f"http://{ip}:5050")
        assert ready["status"] == 200, ready
        modes[name] = ready["body"].get("config_mode")
    assert set(modes.values()) == {"file"}, modes
    in_file_mode = _settings(file_mode)
    assert in_file_mode == before
    back = _roll_to(stack, "database-mode-again", None, [])
    log = stack.job_log("migrate")
    assert "unchanged since the last sync" in log, log[-2000:]
    assert _settings(back) == before
