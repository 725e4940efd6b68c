"""The e2e tier's Milvus (the kit's milvus image: milvus-lite's server, imagefiles/yuxi-milvus)
answers every pymilvus call Yuxi-Know v0.6.1's Milvus code makes.

The calls are made by the application's own pymilvus (2.6.11) from the api image's tree
(tests/app/actors/milvus_calls.py: MilvusKB's ORM calls one by one, LightRAG's
MilvusVectorDBStorage driven itself); the server runs from the milvus image's tree
(:func:`yuxi_k8s.app.localdeps.milvus_server`). tests/e2e/README.md, "Milvus in the e2e tier",
lists what differs from real Milvus and what the kit mends.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from yuxi_k8s.app.localdeps import PUBLISHED_MILVUS_LITE, milvus_server
from yuxi_k8s.app.localrun import AppRunner

ACTOR = "tests/app/actors/milvus_calls.py"
# MilvusKB 21 calls, LightRAG 14 (tests/app/actors/milvus_calls.py): one answer each.
EXPECTED_CALLS = {"milvus_kb": 21, "lightrag": 14}


def calls(runner: AppRunner, uri: str, *parts: str) -> dict[str, dict[str, Any]]:
    """The actor's answers by call; fails if it did not finish."""
    done = runner.run(["python", runner.in_checkout(ACTOR), *parts], {"MILVUS_URI": uri}, timeout=300)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines and lines[-1].get("done"), (
        f"the actor did not finish:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return {line["call"]: line for line in lines[:-1]}


def failed(answers: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {call: a["detail"] for call, a in answers.items() if not a["ok"]}


@pytest.mark.parametrize("part", sorted(EXPECTED_CALLS))
def test_every_milvus_call_of_the_app_works_against_the_e2e_milvus(
    app_runner: AppRunner, milvus_tree: Path, part: str
) -> None:
    with milvus_server(milvus_tree) as uri:
        answers = calls(app_runner, uri, part)
    assert not failed(answers), json.dumps(failed(answers), ensure_ascii=False, indent=1)
    assert len(answers) == EXPECTED_CALLS[part], sorted(answers)


def test_a_knowledge_base_survives_a_restart_of_the_server(
    app_runner: AppRunner, milvus_tree: Path, tmp_path: Path
) -> None:
    data = tmp_path / "milvus"
    with milvus_server(milvus_tree, data) as uri:
        written = calls(app_runner, uri, "persist_write")
    with milvus_server(milvus_tree, data) as uri:  # the first was stopped with SIGTERM, as by the kubelet
        read = calls(app_runner, uri, "persist_read")
    assert not failed(written) and not failed(read), {**failed(written), **failed(read)}
    assert len(written) == len(read) == 1


def test_published_milvus_lite_refuses_what_the_kit_mends(app_runner: AppRunner, milvus_tree: Path) -> None:
    """Without the mends (plain ``milvus-lite server``) MilvusKB's collection cannot be made; when
    this fails, a new milvus-lite answers these calls itself and imagefiles/yuxi-milvus can shrink."""
    with milvus_server(milvus_tree, entrypoint=PUBLISHED_MILVUS_LITE) as uri:
        answers = calls(app_runner, uri, "milvus_kb", "lightrag")
    refused = failed(answers)
    creation = "Collection(name, schema: VARCHAR analyzer 'chinese', FLOAT_VECTOR, SPARSE, BM25 function)"
    assert "unknown tokenizer type: 'chinese'" in refused.get(creation, ""), refused
    deletes = [call for call in refused if call.startswith("LightRAG") and "delete" in call]
    assert deletes and all("'list' object has no attribute 'get'" in refused[c] for c in deletes), refused
