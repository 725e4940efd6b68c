"""Answers in flight across a rollout (per-process state, row 17), on the real application's processes.

Yuxi-Know 0.6.1 streams a chat answer from the api process that took the request
(``POST /api/chat/agent``): when that process stops, the answer is cut and nothing can resume it.
Its runs API keeps the answer out of the api: ``POST /api/chat/runs`` queues the run in Redis, the
ARQ worker runs it and appends its events to a Redis stream, and ``GET
/api/chat/runs/<id>/events?after_seq=<seq>`` reads them back as server-sent events from any api
process. The web page uses it only when built with ``VITE_USE_RUNS_API=true``, which the kit's web
image is (``images.WEB_BUILD_ENV``); its client keeps the last ``seq`` and, when the connection
drops, reconnects with it, skipping any event at or before that seq (``useAgentRunStream.js``).

Here: two api processes, the worker and the model stand-in streaming one word every 0.2 s. A run
made through A and read through A, A killed (SIGKILL) after the first words, the client resumes
through B as the web page does: the whole answer, every event of the run's stream once. The
baseline: the plain streamed chat through A, A killed the same way: the answer is lost.

The worker stopped (SIGTERM, as a rollout or scale-in of the worker does) in the middle of an
answer finishes it first with the kit (arq's drain, ``integration.chat_runs``); with the app's own
settings (``YUXI_K8S_WORKER_DRAIN_S=0``) arq cancels the run at once and the answer is cut.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.app.http import admin_headers, call
from tests.app.runs_reader import RunReader
from tests.app.servers import Servers
from tests.services_fixtures import LoopbackServices
from yuxi_k8s.app import images, source
from yuxi_k8s.app.localrun import AppRunner, Server
from yuxi_k8s.probes import model_standin

WORD_DELAY = 0.2  # the stand-in's pace: a 40-word answer takes 8 s, the kill lands in it
WORDS_BEFORE_KILL = 3
QUERY = " ".join(f"word{n}" for n in range(40))
ANSWER = f"stand-in answer: {QUERY}"  # what the stand-in streams back
AGENT = "ChatbotAgent"
PROVIDER = "standin"
# The flag's trace in the bundle: with VITE_USE_RUNS_API=true the chat's `useRunsApi` is this
# expression; with it unset the build folds `'false' === 'true' && ...` away, the name with it.
RUNS_API_ON = 'localStorage.getItem("force_legacy_stream")'


@pytest.fixture
def standin() -> Iterator[str]:
    """The model stand-in on loopback, streaming a word every WORD_DELAY seconds."""
    with model_standin.serving(chunk_delay=WORD_DELAY) as url:
        yield url


@pytest.fixture
def processes(
    app_runner: AppRunner, kit_db: str, loopback_services: LoopbackServices, tmp_path: Path
) -> Iterator[Servers]:
    # RUNNING_IN_DOCKER off: with it the app sends the stand-in's 127.0.0.1 to host.docker.internal.
    started = Servers(app_runner, kit_db, loopback_services.redis_url, tmp_path, RUNNING_IN_DOCKER="")
    yield started
    started.stop()


def _chat_setup(server: Server, auth: dict[str, str], standin: str) -> tuple[int, str]:
    """The stand-in as a provider and the chat agent's model; (agent config id, a new thread id)."""
    provider = {
        "name": "Stand-in",
        "url": standin,
        "base_url": f"{standin}/v1",
        "default": model_standin.MODEL,
        "env": "NO_API_KEY",
        "models": [model_standin.MODEL],
    }
    added = call(
        server,
        "POST",
        "/api/system/custom-providers",
        auth,
        json={"provider_id": PROVIDER, "provider_data": provider},
    )
    assert added.status_code == 200, added.text
    configs = call(server, "GET", f"/api/chat/agent/{AGENT}/configs", auth)
    assert configs.status_code == 200, configs.text
    config_id = int(configs.json()["configs"][0]["id"])
    context = {"config_json": {"context": {"model": f"{PROVIDER}/{model_standin.MODEL}", "tools": []}}}
    put = call(server, "PUT", f"/api/chat/agent/{AGENT}/configs/{config_id}", auth, json=context)
    assert put.status_code == 200, put.text
    thread = call(server, "POST", "/api/chat/thread", auth, json={"agent_id": AGENT, "title": "rollout"})
    assert thread.status_code == 200, thread.text
    return config_id, str(thread.json()["id"])


def _start_run(server: Server, auth: dict[str, str], standin: str) -> tuple[str, str]:
    """A run of the chat agent on the stand-in, made through *server*: (run id, thread id)."""
    config_id, thread_id = _chat_setup(server, auth, standin)
    body = {"query": QUERY, "agent_config_id": config_id, "thread_id": thread_id}
    meta = {"request_id": str(uuid.uuid4())}
    made = call(server, "POST", "/api/chat/runs", auth, json={**body, "meta": meta})
    assert made.status_code == 200, made.text
    return str(made.json()["run_id"]), thread_id


def _kill(server: Server) -> None:
    """SIGKILL: the process ends at once, as when its node is lost or its grace period runs out."""
    server.proc.kill()
    server.proc.wait(timeout=30)


def test_the_web_image_is_built_with_the_runs_api_on() -> None:
    web = images.image_tree(source.resolve(), "web") / "usr/share/nginx/html/assets"
    bundles = [p.name for p in web.glob("*.js") if RUNS_API_ON in p.read_text(encoding="utf-8")]
    assert bundles, f"no bundle under {web} reads {RUNS_API_ON}: VITE_USE_RUNS_API was not true"


def test_a_run_read_through_a_killed_replica_is_resumed_through_the_other_whole(
    processes: Servers, loopback_services: LoopbackServices, standin: str
) -> None:
    a, b = processes.start("a"), processes.start("b")
    worker = processes.start_worker("worker")
    auth = admin_headers(a)
    run_id, thread_id = _start_run(a, auth, standin)
    reader = RunReader(run_id, auth)
    before_kill = ""

    def kill_a(words: int) -> None:
        nonlocal before_kill
        if words == WORDS_BEFORE_KILL:  # mid-answer: the rest is still to come from the stand-in
            worker.check_running("worker")
            before_kill = reader.text
            _kill(a)

    with pytest.raises(httpx.HTTPError):  # A's connection breaks off mid-stream
        reader.read(a.url, kill_a)
    assert before_kill and ANSWER.startswith(before_kill) and before_kill != ANSWER, before_kill
    reader.read(b.url)  # the web page reconnects from the last seq it took, here through B

    assert reader.ended == "finished" and reader.text == ANSWER, (reader.ended, reader.text)
    stream = redis.Redis.from_url(loopback_services.redis_url, decode_responses=True)
    written = [seq for seq, _ in stream.xrange(f"run:events:{run_id}") or []]
    assert reader.taken == written  # every event the worker wrote, once, in order
    run = call(b, "GET", f"/api/chat/runs/{run_id}", auth).json()["run"]
    assert run["status"] == "completed", run
    history = call(b, "GET", f"/api/chat/thread/{thread_id}/history", auth)
    assert ANSWER in history.text, history.text[:2000]
    # Read to its end, the finished run's stream closes at once (the app alone re-sends its last
    # event every second and keeps the connection open for 30 minutes).
    again = RunReader(run_id, auth)
    again.last_seq = reader.last_seq
    again.read(b.url)
    assert again.ended == "close:completed" and again.taken == [], (again.ended, again.taken)


def test_the_plain_streamed_chat_through_a_killed_replica_loses_the_answer(
    processes: Servers, standin: str
) -> None:
    a, b = processes.start("a"), processes.start("b")
    auth = admin_headers(a)
    config_id, thread_id = _chat_setup(a, auth, standin)
    body = {"query": QUERY, "agent_config_id": config_id, "thread_id": thread_id}
    received = ""
    with (
        pytest.raises(httpx.HTTPError),
        httpx.stream("POST", f"{a.url}/api/chat/agent", json=body, headers=auth, timeout=60) as r,
    ):
        assert r.status_code == 200
        words = 0
        for line in r.iter_lines():
            chunk = json.loads(line) if line.strip() else {}
            if chunk.get("status") == "loading" and isinstance(chunk.get("response"), str):
                received += chunk["response"]
                words += 1
                if words == WORDS_BEFORE_KILL:
                    _kill(a)
    assert received and ANSWER.startswith(received) and received != ANSWER, received
    # Nothing ran it elsewhere and nothing can resume it: B has no run for the thread and no answer.
    active = call(b, "GET", f"/api/chat/thread/{thread_id}/active_run", auth)
    assert active.status_code == 200 and active.json()["run"] is None, active.text
    history = call(b, "GET", f"/api/chat/thread/{thread_id}/history", auth)
    assert history.status_code == 200 and ANSWER not in history.text, history.text[:2000]


def _stop_the_worker_mid_answer(processes: Servers, standin: str, **worker_env: str) -> tuple[RunReader, str]:
    """A run read through api A; its worker sent SIGTERM (as a rollout does) after the first words,
    the reading goes on to the run's end. The reader and the run's status."""
    a = processes.start("a")
    worker = processes.start_worker("worker", **worker_env)
    auth = admin_headers(a)
    run_id, _ = _start_run(a, auth, standin)
    reader = RunReader(run_id, auth)

    def stop_worker(words: int) -> None:
        if words == WORDS_BEFORE_KILL:
            worker.check_running("worker")
            worker.proc.terminate()  # not waited for: the events go on meanwhile, or not

    reader.read(a.url, stop_worker)
    worker.proc.wait(timeout=120)
    return reader, call(a, "GET", f"/api/chat/runs/{run_id}", auth).json()["run"]["status"]


def test_a_worker_stopped_mid_answer_finishes_it_before_it_exits(processes: Servers, standin: str) -> None:
    reader, status = _stop_the_worker_mid_answer(processes, standin)
    assert (reader.ended, status) == ("finished", "completed")
    assert reader.text == ANSWER, reader.text


def _without_a_repeated_tail(text: str) -> str:
    """*text* with its last words once: arq's cancel can land in the app's ``ChunkedEventWriter.flush``
    after its XADD and before it empties the buffer, and the app's ``except CancelledError`` flushes
    the same buffer again (run_worker.py, 0.6.1): the words just before the cut can come twice."""
    words = text.split(" ")
    for size in range(1, len(words) // 2 + 1):
        if words[-size:] == words[-2 * size : -size]:
            return " ".join(words[:-size])
    return text


def test_the_apps_own_worker_stopped_mid_answer_cuts_it(processes: Servers, standin: str) -> None:
    reader, status = _stop_the_worker_mid_answer(processes, standin, YUXI_K8S_WORKER_DRAIN_S="0")
    assert (reader.ended, status) == ("interrupted", "cancelled")
    cut = _without_a_repeated_tail(reader.text)
    assert ANSWER.startswith(cut) and cut != ANSWER, reader.text
