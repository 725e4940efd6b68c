"""Database mode inside the real application, against the application alone, in the same run.

Run with `scripts/bench.sh app`. The real Yuxi-Know 0.6.1 runs as loopback uvicorn
servers from the api image's file tree (yuxi_k8s.app.localrun; the loopback
PostgreSQL of yuxi_k8s.devservices). Three figures (issue 11):

1. propagation: a setting changed through replica A's HTTP API (POST
   /api/system/config), read through replica B's (GET), over 200 changes: p50/p99.
   Baseline: the same with the application alone (file mode, one shared saves/):
   B never serves A's change until it restarts. Ratio: p50 / one GET round trip on B.
2. concurrent saves: A and B save different settings through their APIs at the same
   time, 500 each (1,000 saves): saves lost (a setting not at its writer's last
   value, or fewer store versions than saves). Baseline: the application alone on
   one shared saves/ (each save rewrites the whole file from that replica's view).
3. tasks failed by a rolling restart of two replicas that each run a task: with the
   kit (start C, stop A, start D, stop B) vs. the application alone starting (the
   new replicas fail the tasks the others run).
"""

from __future__ import annotations

import json
import os
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

from yuxi_k8s.app.localrun import AppRunner, Server, admin_headers, app_env, image_runner, kit_database  # noqa: E402

ADMIN = {"user_id": "bench_admin", "password": "Bench-admin-pass-1"}
CHANGES = int(os.environ.get("BENCH_CHANGES", "200"))
SAVES = int(os.environ.get("BENCH_SAVES", "500"))


class Pair:
    """Replicas of the real app on one database and one saves/ folder."""

    def __init__(self, app: AppRunner, db: str, work: Path, *, kit: bool) -> None:
        self.app, self.db, self.work, self.kit = app, db, work, kit
        self.saves = work / "saves"
        self.saves.mkdir(parents=True, exist_ok=True)
        self.servers: list[Server] = []

    def start(self, name: str) -> Server:
        extra = {"YUXI_K8S_TEST_HOOKS": "1"} if self.kit else {"CONFIG_MODE": "file"}
        server = Server(
            self.app, app_env(self.db, self.saves, **extra), self.work / f"{name}.log", kit=self.kit
        )
        self.servers.append(server)
        server.wait_ready()
        return server

    def close(self) -> None:
        for server in self.servers:
            if server.proc.poll() is None:
                server.proc.kill()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def propagation(
    a: Server, b: Server, auth: dict[str, str], changes: int, patience_s: float
) -> dict[str, Any]:
    key = "sandbox_exec_timeout_seconds"
    latencies, missed, gets = [], 0, []
    with httpx.Client(headers=auth, timeout=10) as client:
        for i in range(changes):
            value = 10_000 + i
            t0 = time.monotonic()
            client.post(a.url + "/api/system/config", json={"key": key, "value": value}).raise_for_status()
            while True:
                g0 = time.monotonic()
                body = client.get(b.url + "/api/system/config").json()
                gets.append(time.monotonic() - g0)
                if body.get(key) == value:
                    latencies.append(time.monotonic() - t0)
                    break
                if time.monotonic() - t0 > patience_s:
                    missed += 1
                    break
    out: dict[str, Any] = {"changes": changes, "missed": missed, "get_p50_ms": statistics.median(gets) * 1000}
    if latencies:
        out |= {"p50_ms": pct(latencies, 0.5) * 1000, "p99_ms": pct(latencies, 0.99) * 1000}
    return out


def concurrent_saves(a: Server, b: Server, auth: dict[str, str], saves: int) -> dict[str, Any]:
    keys = {"a": "sandbox_exec_timeout_seconds", "b": "sandbox_max_output_bytes"}
    errors: list[str] = []

    def hammer(server: Server, key: str) -> None:
        with httpx.Client(headers=auth, timeout=30) as client:
            for i in range(saves):
                reply = client.post(server.url + "/api/system/config", json={"key": key, "value": 20_000 + i})
                if reply.status_code != 200:
                    errors.append(f"{key}: {reply.status_code}")

    threads = [threading.Thread(target=hammer, args=(s, keys[n])) for n, s in (("a", a), ("b", b))]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    last = 20_000 + saves - 1
    time.sleep(1.0)
    views = {}
    with httpx.Client(headers=auth, timeout=10) as client:
        for name, server in (("a", a), ("b", b)):
            body = client.get(server.url + "/api/system/config").json()
            views[name] = {k: body.get(k) for k in keys.values()}
    lost_keys = sum(1 for view in views.values() for k in keys.values() if view[k] != last)
    return {
        "saves": 2 * saves,
        "seconds": round(elapsed, 1),
        "errors": len(errors),
        "lost_final_values": lost_keys,
        "views": views,
    }


def store_versions(db: str, keys: list[str]) -> dict[str, int]:
    url = db.replace("postgresql+asyncpg://", "postgresql://", 1)
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT key, version FROM yuxi_k8s.config_entries WHERE key = ANY(%s)", (keys,)
        ).fetchall()
    return dict(rows)


def file_values(saves: Path) -> dict[str, Any]:
    import tomllib

    path = saves / "config" / "base.toml"
    return tomllib.loads(path.read_text()) if path.exists() else {}


def task_status(server: Server, auth: dict[str, str], task_id: str) -> str:
    body = httpx.get(f"{server.url}/api/tasks/{task_id}", headers=auth, timeout=10).json()
    return str(body.get("task", body).get("status"))


def rolling_restart(app: AppRunner, db: str, work: Path, *, kit_after: bool) -> dict[str, Any]:
    """A and B (with the kit) each run a 60 s task; then C and D replace them (kit or the app alone)."""
    pair = Pair(app, db, work, kit=True)
    try:
        a, b = pair.start("a"), pair.start("b")
        auth = admin_headers(a, ADMIN["user_id"], ADMIN["password"])
        tasks = []
        for server in (a, b):
            reply = httpx.post(
                server.url + "/api/yuxi-k8s/test/tasks", json={"seconds": 60}, headers=auth, timeout=30
            )
            tasks.append(reply.json()["task_id"])
        successor = Pair(app, db, work, kit=kit_after)
        successor.saves = pair.saves
        try:
            c = successor.start("c")
            after_start = [task_status(c, auth, t) for t in tasks]  # what a new replica did to them
            a.terminate(timeout=120)  # with the kit: drains its task first
            d = successor.start("d")
            b.terminate(timeout=120)
            final = [task_status(d, auth, t) for t in tasks]
        finally:
            successor.close()
        failed = sum(1 for s0, s1 in zip(after_start, final, strict=True) if "failed" in (s0, s1))
        return {"tasks": len(tasks), "failed": failed, "after_new_replica": after_start, "final": final}
    finally:
        pair.close()


def main() -> int:
    base_url = os.environ.get("YUXI_TEST_DATABASE_URL")
    if not base_url:
        from yuxi_k8s.devservices import DevServices, ServicesError

        try:
            base_url = DevServices().up().database_url
        except ServicesError as exc:
            print(f"bench_app: the loopback services are needed: {exc}", file=sys.stderr)
            return 2
    app = image_runner()
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} CPUs")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-app-") as tmp:
        work = Path(tmp)
        # 1 + 2 with the kit
        with kit_database(base_url, prefix="yuxi_bench") as db:
            pair = Pair(app, db, work / "kit", kit=True)
            try:
                a, b = pair.start("a"), pair.start("b")
                auth = admin_headers(a, ADMIN["user_id"], ADMIN["password"])
                results["kit_propagation"] = propagation(a, b, auth, CHANGES, 5.0)
                saved_keys = ["sandbox_exec_timeout_seconds", "sandbox_max_output_bytes"]
                before = store_versions(db, saved_keys)  # figure 1 changed one of them already
                results["kit_saves"] = concurrent_saves(a, b, auth, SAVES)
                after = store_versions(db, saved_keys)
                results["kit_saves"]["store_versions"] = {
                    key: after.get(key, 0) - before.get(key, 0) for key in saved_keys
                }
            finally:
                pair.close()
        # 1 + 2, the application alone (file mode, one shared saves/)
        with kit_database(base_url, prefix="yuxi_bench") as db:
            pair = Pair(app, db, work / "alone", kit=False)
            try:
                a, b = pair.start("a"), pair.start("b")
                auth = admin_headers(a, ADMIN["user_id"], ADMIN["password"])
                results["alone_propagation"] = propagation(a, b, auth, 5, 5.0)
                results["alone_saves"] = concurrent_saves(a, b, auth, SAVES)
                results["alone_saves"]["file"] = {
                    k: v for k, v in file_values(pair.saves).items() if k.startswith("sandbox_")
                }
            finally:
                pair.close()
        # 3
        with kit_database(base_url, prefix="yuxi_bench") as db:
            results["kit_rolling_restart"] = rolling_restart(app, db, work / "roll-kit", kit_after=True)
        with kit_database(base_url, prefix="yuxi_bench") as db:
            results["alone_rolling_restart"] = rolling_restart(app, db, work / "roll-alone", kit_after=False)

    kp, ap = results["kit_propagation"], results["alone_propagation"]
    print("\n1. a setting changed on replica A's API, read through replica B's API")
    print(f"   kit:   {kp['changes']} changes, missed {kp['missed']}, p50 {kp['p50_ms']:.1f} ms, "
          f"p99 {kp['p99_ms']:.1f} ms (one GET on B: {kp['get_p50_ms']:.1f} ms; p50 = "
          f"{kp['p50_ms'] / kp['get_p50_ms']:.1f}x a GET)")  # fmt: skip
    print(f"   alone: {ap['changes']} changes, {ap['missed']} never seen within 5 s (until a restart)")
    ks, als = results["kit_saves"], results["alone_saves"]
    print(f"\n2. {ks['saves']} saves at once, two replicas, two settings")
    print(f"   kit:   {ks['lost_final_values']} settings lost on a replica, errors {ks['errors']}, "
          f"new store versions {ks['store_versions']} (one per save), {ks['seconds']} s")  # fmt: skip
    lost = als["lost_final_values"]
    print(f"   alone: {lost} of 4 replica views lost a setting; base.toml holds {als['file']}")
    kr, ar = results["kit_rolling_restart"], results["alone_rolling_restart"]
    print("\n3. tasks failed by a rolling restart of 2 replicas, each running a task")
    for label, r in (("kit:  ", kr), ("alone:", ar)):
        print(f"   {label} {r['failed']} of {r['tasks']} failed (after a new replica started: "
              f"{r['after_new_replica']}; at the end: {r['final']})")  # fmt: skip
    out = ROOT / ".run" / "bench-app.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nall figures: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
