"""The kit's neo4j image serves what Yuxi-Know 0.6.1 and its LightRAG ask of Neo4j.

The image's launcher runs from the image's file tree on a loopback port
(``localdeps.neo4j_server``); the app's own environment (the api image tree: neo4j
driver 6.1.0, lightrag-hku 1.4.13) talks to it through tests/app/actors/neo4j_client.py.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from yuxi_k8s.app.localdeps import NEO4J_READY, neo4j_command
from yuxi_k8s.app.localrun import AppRunner
from yuxi_k8s.cluster.oci import DEFAULT_PATH

CLIENT = "tests/app/actors/neo4j_client.py"


def _client(app_runner: AppRunner, neo4j: dict[str, Any]) -> dict[str, Any]:
    env = {"NEO4J_URI": neo4j["uri"], "NEO4J_USERNAME": neo4j["user"], "NEO4J_PASSWORD": neo4j["password"]}
    done = app_runner.run(["python", app_runner.in_checkout(CLIENT)], env, timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no answer (exit {done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    answer: dict[str, Any] = json.loads(lines[-1])
    assert "error" not in answer, f"{answer['error']}\n{answer.get('trace', '')}\n{done.stderr[-3000:]}"
    return answer


def test_the_apps_driver_and_lightrag_work_against_it(app_runner: AppRunner, neo4j: dict[str, Any]) -> None:
    print(f"neo4j answered {neo4j['start_s']:.1f} s after start")
    got = _client(app_runner, neo4j)
    assert got["driver_version"] == "6.1.0"
    assert got["server_agent"].startswith("Neo4j/5.26.")
    assert got["wrong_password"] == "Neo.ClientError.Security.Unauthorized"
    assert got["read"] == "written"
    # the app's graph code: SHOW DATABASES, the vector index and its query, db.labels()
    assert got["databases"] == ["neo4j", "system"]
    assert got["vector_hits"] == ["probe-entity"]
    assert {"Entity", "Upload", "Probe"} <= set(got["labels"])
    # LightRAG: its indexes exist and are online, the subgraph comes from APOC (no fallback),
    # the full-text search finds a CJK name
    indexes = {(i["type"], i["state"]) for i in got["lightrag_indexes"]}
    assert indexes == {("RANGE", "ONLINE"), ("FULLTEXT", "ONLINE")}, got["lightrag_indexes"]
    assert got["lightrag_node"] == "person"
    assert got["lightrag_has_edge"] is True
    assert len(got["lightrag_subgraph_nodes"]) == 3
    assert got["lightrag_search"] == ["阿尔法公司"]
    assert sorted(got["lightrag_labels"]) == sorted(["Beta Labs", "张三", "阿尔法公司"])
    assert not [w for w in got["lightrag_warnings"] if "APOC" in w], got["lightrag_warnings"]


@pytest.mark.parametrize(
    ("auth", "says"),
    [
        (None, "NEO4J_AUTH is not set"),
        ("none", "NEO4J_AUTH=none is refused"),
        ("admin/long-enough-password", "must be neo4j/<password>"),
        ("neo4j/short", "at least 8 characters"),
    ],
)
def test_the_launcher_refuses_a_missing_or_malformed_password(
    neo4j_tree: Path, auth: str | None, says: str
) -> None:
    env = {"PATH": DEFAULT_PATH, "HOME": "/tmp", **({"NEO4J_AUTH": auth} if auth is not None else {})}
    done = subprocess.run(neo4j_command(neo4j_tree), env=env, capture_output=True, text=True, timeout=60)
    lines = [line for line in done.stderr.splitlines() if line.startswith("neo4j:")]
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(lines) == 1 and says in lines[0], done.stderr[-2000:]
    assert NEO4J_READY not in done.stderr
