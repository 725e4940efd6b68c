"""Knowledge bases across two replicas of the real application, with the kit and alone, same run.

Run with `scripts/bench.sh knowledge`. Two loopback uvicorn servers of Yuxi-Know 0.6.1
(full mode, from the api image's tree; MinIO on loopback for the objects a delete
removes) share one database. Two clients work at once, each on knowledge bases of its
own, sending each operation to A or B at random (seeded): create, rename, change the
query params, delete (BENCH_KB_OPS in all, default 1,000). Knowledge bases are of the
Dify type (no Milvus needed; the metadata code is the same for every type).

Figures, for the kit and for the application alone:
- resurrected: rows in the app's table that a client deleted;
- lost: knowledge bases whose final name or query params differ from a serial replay of
  each client's operations (every write acknowledged, so the replay is the truth);
- stale reads: right after each acknowledged write, the same knowledge base read on the
  *other* replica (GET /api/knowledge/databases/{id}) shows something else;
- visibility on the other replica: time from the acknowledgement to the first read there
  that shows the write (p50/p99; goal p99 < 1 s), as a ratio to one GET round trip;
- errors: operations a replica refused (the application alone does not know a knowledge
  base the other replica made until something reloads its cache).
Every tenth operation the client also lists the knowledge bases on both replicas, as the
web page does: that is what makes the application alone reload (and later write back) its
cache.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from yuxi_k8s.app.localdeps import MinioEndpoint, minio_server  # noqa: E402
from yuxi_k8s.app.localrun import AppRunner, Server, admin_headers, app_env, image_runner, kit_database  # noqa: E402
from yuxi_k8s.state.settings import libpq_url  # noqa: E402

OPS = int(os.environ.get("BENCH_KB_OPS", "1000"))
CLIENTS = 2
ADMIN = {"user_id": "bench_admin", "password": "Bench-admin-pass-1"}
DIFY = {"dify_api_url": "http://127.0.0.1:9/v1", "dify_token": "unused", "dify_dataset_id": "unused"}
FULL_MODE = {"LITE_MODE": "false", "MILVUS_URI": "http://127.0.0.1:9", "YUXI_SKIP_APP_INIT": "1"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Client(threading.Thread):
    """One user's stream of operations on knowledge bases of its own, across both replicas."""

    def __init__(self, n: int, servers: list[Server], auth: dict[str, str], ops: int, wait_s: float) -> None:
        super().__init__(name=f"client-{n}")
        self.n, self.servers, self.auth, self.ops, self.wait_s = n, servers, auth, ops, wait_s
        self.rng = random.Random(1000 + n)
        self.model: dict[str, dict[str, Any]] = {}  # the serial replay: db_id -> name, top_k
        self.deleted: set[str] = set()
        self.stale = 0
        self.visible_after: list[float] = []
        self.errors: list[str] = []

    def _read(self, client: httpx.Client, server: Server, db_id: str) -> dict[str, Any] | None:
        reply = client.get(f"{server.url}/api/knowledge/databases/{db_id}")
        return dict(reply.json()) if reply.status_code == 200 else None

    def _shows(self, info: dict[str, Any] | None, db_id: str) -> bool:
        want = self.model.get(db_id)
        if want is None:
            return info is None
        top_k = ((info or {}).get("query_params") or {}).get("options", {}).get("top_k")
        return info is not None and info.get("name") == want["name"] and top_k == want["top_k"]

    def _check_other(self, client: httpx.Client, other: Server, db_id: str, acked: float) -> None:
        first = self._read(client, other, db_id)
        if not self._shows(first, db_id):
            self.stale += 1
        deadline = acked + self.wait_s
        info = first
        while not self._shows(info, db_id) and time.perf_counter() < deadline:
            info = self._read(client, other, db_id)
        if self._shows(info, db_id):
            self.visible_after.append(time.perf_counter() - acked)

    def run(self) -> None:
        with httpx.Client(headers=self.auth, timeout=60) as client:
            for i in range(self.ops):
                writer, other = self.rng.sample(self.servers, 2)
                live = sorted(self.model)
                choices = ["create", "rename", "params", "delete"]
                kind = "create" if len(live) < 3 else self.rng.choice(choices)
                try:
                    db_id = self._operate(client, writer, kind, live, i)
                    self._check_other(client, other, db_id, time.perf_counter())
                    if i % 10 == 0:  # the knowledge-base page, as a browser shows it on either replica
                        for server in self.servers:
                            client.get(f"{server.url}/api/knowledge/databases").raise_for_status()
                except (httpx.HTTPError, AssertionError, ValueError, KeyError) as exc:
                    self.errors.append(f"{kind} #{i} on {writer.url}: {exc}")

    def _operate(self, client: httpx.Client, writer: Server, kind: str, live: list[str], i: int) -> str:
        base = f"{writer.url}/api/knowledge/databases"
        if kind == "create":
            name = f"c{self.n}-kb-{i}"
            body = {"database_name": name, "description": name, "kb_type": "dify", "additional_params": DIFY}
            reply = client.post(base, json=body)
            assert reply.status_code == 200, reply.text
            db_id = str(reply.json()["db_id"])
            self.model[db_id] = {"name": name, "top_k": None}
            return db_id
        db_id = self.rng.choice(live)
        if kind == "rename":
            name = f"c{self.n}-renamed-{i}"
            reply = client.put(f"{base}/{db_id}", json={"name": name, "description": name})
            assert reply.status_code == 200, reply.text
            self.model[db_id]["name"] = name
        elif kind == "params":
            reply = client.put(f"{base}/{db_id}/query-params", json={"top_k": i})
            assert reply.status_code == 200, reply.text
            self.model[db_id]["top_k"] = i
        else:
            reply = client.delete(f"{base}/{db_id}")
            assert reply.status_code == 200, reply.text
            del self.model[db_id]
            self.deleted.add(db_id)
        return db_id


def measure(
    app: AppRunner, base_url: str, minio: MinioEndpoint, work: Path, *, kit: bool, wait_s: float
) -> dict[str, Any]:
    with kit_database(base_url, prefix="yuxi_bench") as db:
        saves = work / ("kit" if kit else "alone") / "saves"
        saves.mkdir(parents=True)
        env = app_env(db, saves, **FULL_MODE, **minio.app_env())
        servers: list[Server] = []
        try:
            for n in ("a", "b"):  # one after the other: the app alone can deadlock starting two at once
                servers.append(Server(app, env, saves.parent / f"{n}.log", kit=kit))
                servers[-1].wait_ready()
            auth = admin_headers(servers[0], ADMIN["user_id"], ADMIN["password"])
            rtt = []
            with httpx.Client(headers=auth, timeout=30) as client:
                for _ in range(50):
                    t0 = time.perf_counter()
                    client.get(servers[1].url + "/api/knowledge/databases")
                    rtt.append(time.perf_counter() - t0)
            clients = [Client(n, servers, auth, OPS // CLIENTS, wait_s) for n in range(CLIENTS)]
            t0 = time.monotonic()
            for c in clients:
                c.start()
            for c in clients:
                c.join()
            elapsed = time.monotonic() - t0
            # A rename's save runs in a task the app does not wait for: let the last ones land.
            time.sleep(1)
            with psycopg.connect(libpq_url(db)) as conn:
                found = conn.execute("SELECT db_id, name, query_params FROM knowledge_bases")
                rows = {r[0]: (r[1], r[2]) for r in found}
        finally:
            for server in servers:
                server.terminate()
    deleted = set().union(*(c.deleted for c in clients))
    model = {k: v for c in clients for k, v in c.model.items()}
    resurrected = sorted(deleted & set(rows))
    lost = []
    for db_id, want in model.items():
        got = rows.get(db_id)
        top_k = ((got[1] or {}).get("options") or {}).get("top_k") if got else None
        if got is None or got[0] != want["name"] or top_k != want["top_k"]:
            lost.append(db_id)
    visible = [t for c in clients for t in c.visible_after]
    get_rtt = statistics.median(rtt)
    return {
        "ops": sum(c.ops for c in clients),
        "errors": [e for c in clients for e in c.errors][:5],
        "error_count": sum(len(c.errors) for c in clients),
        "elapsed_s": round(elapsed, 1),
        "resurrected": len(resurrected),
        "lost": len(lost),
        "stale_reads": sum(c.stale for c in clients),
        "visible_p50_ms": round(percentile(visible, 0.5) * 1000, 1) if visible else None,
        "visible_p99_ms": round(percentile(visible, 0.99) * 1000, 1) if visible else None,
        "never_visible": sum(c.ops for c in clients) - len(visible),
        "get_rtt_ms": round(get_rtt * 1000, 1),
        "visible_p50_over_get": round(percentile(visible, 0.5) / get_rtt, 2) if visible else None,
    }


def main() -> int:
    base_url = os.environ.get("YUXI_TEST_DATABASE_URL")
    if not base_url:
        from yuxi_k8s.devservices import DevServices, ServicesError

        try:
            base_url = DevServices().up().database_url
        except ServicesError as exc:
            print(f"bench_knowledge: the loopback services are needed: {exc}", file=sys.stderr)
            return 2
    app = image_runner()
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="bench-kb-") as tmp:
        work = Path(tmp)
        with minio_server(work / "minio", work / "minio.log") as minio:
            kit = measure(app, base_url, minio, work, kit=True, wait_s=5.0)
            # The app alone mostly never shows the other replica's write: a short wait keeps it bounded.
            alone = measure(app, base_url, minio, work, kit=False, wait_s=0.25)
    print(json.dumps({"kit": kit, "alone": alone}, indent=2))
    print(
        f"{kit['ops']} mixed knowledge-base operations over two replicas: "
        f"resurrected {kit['resurrected']} (alone {alone['resurrected']}), "
        f"lost {kit['lost']} (alone {alone['lost']}), "
        f"stale reads {kit['stale_reads']} (alone {alone['stale_reads']}), "
        f"refused {kit['error_count']} (alone {alone['error_count']}); "
        f"visible on the other replica p50 {kit['visible_p50_ms']} ms "
        f"= {kit['visible_p50_over_get']}x one GET, "
        f"p99 {kit['visible_p99_ms']} ms (alone: {alone['never_visible']} not visible within 0.25 s)"
    )
    return 0 if kit["resurrected"] == kit["lost"] == kit["stale_reads"] == kit["error_count"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
