"""Benchmarks of the state library against baselines measured in the same run.

Run with `scripts/bench.sh state`. It starts the loopback PostgreSQL and Redis itself
(yuxi_k8s.devservices; YUXI_PG_PORT / YUXI_REDIS_PORT move them) unless
YUXI_TEST_DATABASE_URL and YUXI_TEST_REDIS_URL name others. Uses databases of its own,
created and dropped here. What the kit stores is what Yuxi-Know 0.6.1 keeps in
files: settings (top-level keys of base.toml) and model providers.

1. cached config read (``get`` in database mode) vs a direct database read (a
   prepared SELECT on an open psycopg connection: the fastest direct read there is),
   p50/p99 per call, for a string and for a dict value (copied on every read);
2. change propagation: one writer, N subscriber processes (each its own replica);
   latency from before the write to each subscriber's callback, vs opening a fresh
   replica (connect, schema check, full load: the floor of a restart-based reload);
3. migrate-config of a realistic saves/ (base.toml with the settings a user changes
   and 40 provider tables, custom_providers.toml with 20) into empty tables, end to end
   (parse, plan, write, verify, notify, commit), vs the same entries written one API
   call each (``set``/``put_provider``: one transaction and notification per entry);
   export-config and diff of the same for scale;
4. DistributedLock acquire+release (with and without the renewal thread) vs a bare
   Redis PING.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

import psycopg  # noqa: E402
import redis  # noqa: E402
from tests.state.saves_factory import build_saves  # noqa: E402

from yuxi_k8s import migrations  # noqa: E402
from yuxi_k8s.state import DistributedConfig, DistributedLock, Settings, open_config  # noqa: E402
from yuxi_k8s.state.db_backend import make_engine  # noqa: E402
from yuxi_k8s.state.saves import read_saves  # noqa: E402
from yuxi_k8s.state.settings import libpq_url  # noqa: E402
from yuxi_k8s.transfer.service import diff, export, migrate  # noqa: E402

SUBSCRIBERS = 3


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.2f} µs"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def store(url: str) -> DistributedConfig:
    return open_config(Settings(mode="database", database_url=url))


class Database:
    def __init__(self, base_url: str) -> None:
        self.base = base_url
        self.name = f"yuxi_bench_{uuid.uuid4().hex[:8]}"
        self.url = base_url.rsplit("/", 1)[0] + "/" + self.name

    def __enter__(self) -> Database:
        with psycopg.connect(libpq_url(self.base), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        engine = make_engine(self.url)
        migrations.upgrade(engine)
        engine.dispose()
        return self

    def __exit__(self, *exc: object) -> None:
        with psycopg.connect(libpq_url(self.base), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def truncate(self) -> None:
        with psycopg.connect(libpq_url(self.url), autocommit=True) as conn:
            conn.execute("TRUNCATE yuxi_k8s.config_entries, yuxi_k8s.config_providers, yuxi_k8s.sync_points")


def timed(fn: Callable[[], object], rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return samples


# --- 1. cached read vs direct read ------------------------------------------------------------


def bench_reads(url: str) -> dict[str, float]:
    cfg = store(url)
    cfg.set("default_model", "siliconflow/deepseek-ai/DeepSeek-V3.2")
    cfg.set("limits", {"sandbox": {"enabled": False, "timeouts": [30, 60, 180]}, "tags": ["a", "b"]})
    cached = timed(lambda: cfg.get("default_model"), 50_000)
    cached_dict = timed(lambda: cfg.get("limits"), 20_000)
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        sql = "SELECT value FROM yuxi_k8s.config_entries WHERE key = %s"
        direct = timed(lambda: conn.execute(sql, ("default_model",), prepare=True).fetchone(), 3_000)
    cfg.close()
    r = {
        "cached_p50": pct(cached, 50), "cached_p99": pct(cached, 99),
        "dict_p50": pct(cached_dict, 50), "dict_p99": pct(cached_dict, 99),
        "direct_p50": pct(direct, 50), "direct_p99": pct(direct, 99),
    }  # fmt: skip
    print("1. config read, cached vs direct database read")
    print(f"   cached get (string value)   p50 {us(r['cached_p50'])}  p99 {us(r['cached_p99'])}")
    print(f"   cached get (dict, copied)   p50 {us(r['dict_p50'])}  p99 {us(r['dict_p99'])}")
    print(f"   baseline: prepared SELECT   p50 {us(r['direct_p50'])}  p99 {us(r['direct_p99'])}")
    print(
        f"   ratio direct/cached (string): p50 {r['direct_p50'] / r['cached_p50']:.0f}x, "
        f"p99 {r['direct_p99'] / r['cached_p99']:.0f}x; (dict): p50 {r['direct_p50'] / r['dict_p50']:.0f}x "
        "(target >= 100x for strings, cached p99 < 20 µs)"
    )
    return r


# --- 2. change propagation ----------------------------------------------------------------------


def _subscriber(url: str, queue: Any, ready: Any) -> None:
    cfg = store(url)

    def on_change(key: str) -> None:
        if key == "bench_propagation":
            value = cfg.get(key)
            # CLOCK_MONOTONIC is one clock for every process of the machine.
            queue.put((value["seq"], time.monotonic() - value["sent"]))

    cfg.subscribe(on_change)
    ready.set()
    while cfg.get("bench_stop") is None:
        time.sleep(0.05)
    queue.put(("final", cfg.get("bench_propagation")["seq"]))
    cfg.close()


def bench_propagation(url: str, writes: int = 150) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    readies = [ctx.Event() for _ in range(SUBSCRIBERS)]
    procs = [ctx.Process(target=_subscriber, args=(url, queue, ready)) for ready in readies]
    for p in procs:
        p.start()
    for ready in readies:
        ready.wait(60)
    writer = store(url)
    latencies: list[float] = []
    for seq in range(writes):
        writer.set("bench_propagation", {"seq": seq, "sent": time.monotonic()})
        time.sleep(0.02)  # pace the writes: a steady stream, not one burst
    writer.set("bench_stop", True)
    finals: list[int] = []
    while len(finals) < SUBSCRIBERS:
        tag, value = queue.get(timeout=60)
        if tag == "final":
            finals.append(value)
        else:
            latencies.append(value)
    for p in procs:
        p.join(20)
    fresh: list[DistributedConfig] = []
    cold = timed(lambda: fresh.append(store(url)), 5)  # the open only (closing waits for the listener)
    for cfg in fresh:
        cfg.close()
    writer.close()
    r = {
        "delivered": len(latencies), "expected": SUBSCRIBERS * writes,
        "all_final": all(f == writes - 1 for f in finals),
        "p50": pct(latencies, 50), "p99": pct(latencies, 99), "max": max(latencies),
        "cold_open": statistics.median(cold),
    }  # fmt: skip
    print(f"2. change propagation to {SUBSCRIBERS} subscriber processes ({writes} writes, 20 ms apart)")
    print(
        f"   {r['delivered']} callbacks for {r['expected']} subscriber-writes; every subscriber ended on "
        f"the last write: {r['all_final']}"
    )
    print(f"   write -> callback  p50 {ms(r['p50'])}  p99 {ms(r['p99'])}  max {ms(r['max'])}")
    print(
        f"   baseline: open a fresh replica (connect, schema check, full load), median {ms(r['cold_open'])}"
    )
    print(f"   ratio fresh replica / propagation p99: {r['cold_open'] / r['p99']:.1f}x (target p99 < 500 ms)")
    return r


# --- 3. migrate-config of a realistic saves/ ------------------------------------------------------


def bench_migration(base_url: str, rounds: int = 15) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, Database(base_url) as db:
        saves = build_saves(Path(tmp) / "saves", providers=40, custom=20)
        snap = read_saves(saves)
        entries = len(snap.config) + len(snap.providers)
        size = sum(p.stat().st_size for p in (saves / "config").iterdir())

        def import_all() -> None:
            db.truncate()
            assert migrate(saves, db.url).committed

        import_all()  # warm: imports, connections
        bulk = timed(import_all, rounds)
        cfg = store(db.url)

        def one_call_each() -> None:
            db.truncate()
            for key, value in snap.config.items():
                cfg.set(key, value)
            for (scope, name), record in snap.providers.items():
                cfg.put_provider(name, record, scope=scope)

        naive = timed(one_call_each, rounds)
        cfg.close()
        out = Path(tmp) / "exported"
        out.mkdir()

        def export_afresh() -> None:
            for path in out.glob("config/*"):
                path.unlink()
            assert export(out, db.url)

        exports = timed(export_afresh, rounds)
        diffs = timed(lambda: diff(saves, db.url), rounds)
        parse = timed(lambda: read_saves(saves), 200)
    r = {
        "entries": entries, "bytes": size,
        "bulk": statistics.median(bulk), "naive": statistics.median(naive),
        "export": statistics.median(exports), "diff": statistics.median(diffs),
        "parse": statistics.median(parse),
    }  # fmt: skip
    print(
        f"3. migrate-config of a realistic saves/ ({len(snap.config)} settings + {len(snap.providers)} "
        f"providers = {entries} entries, {size / 1024:.1f} KiB of TOML), median of {rounds}"
    )
    print(f"   parse both files            {ms(r['parse'])}")
    print(
        f"   migrate-config end to end   {ms(r['bulk'])} (one transaction: lock, plan, write, verify, notify)"
    )
    print(f"   baseline: one API call each {ms(r['naive'])} (a transaction and a notification per entry)")
    print(f"   ratio: {r['naive'] / r['bulk']:.1f}x; export-config {ms(r['export'])}, diff {ms(r['diff'])}")
    return r


# --- 4. lock round trip ----------------------------------------------------------------------------


def bench_lock(redis_url: str, rounds: int = 2_000) -> dict[str, float]:
    client = redis.Redis.from_url(redis_url)
    samples = {"ping": timed(client.ping, rounds)}
    name = f"bench-{uuid.uuid4().hex[:6]}"
    for key, renew in (("lock", False), ("lock_renewing", True)):
        lock = DistributedLock(client, name, ttl_s=10, renew=renew)
        lock.acquire()
        lock.release()  # load the scripts once

        def round_trip(lock: DistributedLock = lock) -> None:
            lock.acquire()
            lock.release()

        samples[key] = timed(round_trip, rounds)
    r = {f"{k}_p50": pct(v, 50) for k, v in samples.items()} | {
        f"{k}_p99": pct(v, 99) for k, v in samples.items()
    }
    print("4. DistributedLock acquire+release round trip (loopback Redis)")
    print(f"   lock, no renewal thread  p50 {us(r['lock_p50'])}  p99 {us(r['lock_p99'])}")
    print(f"   lock, renewal thread     p50 {us(r['lock_renewing_p50'])}  p99 {us(r['lock_renewing_p99'])}")
    print(f"   baseline PING            p50 {us(r['ping_p50'])}  p99 {us(r['ping_p99'])}")
    print(
        f"   ratio lock/PING p50: {r['lock_p50'] / r['ping_p50']:.1f}x (two round trips: acquire + release)"
    )
    return r


def main() -> int:
    base_url = os.environ.get("YUXI_TEST_DATABASE_URL")
    redis_url = os.environ.get("YUXI_TEST_REDIS_URL")
    if not base_url or not redis_url:
        from yuxi_k8s.devservices import DevServices, ServicesError

        try:
            services = DevServices().up()
        except ServicesError as exc:
            print(f"bench_state: the loopback services are needed: {exc}", file=sys.stderr)
            return 2
        base_url, redis_url = services.database_url, services.redis_url
    only = set(sys.argv[1:])
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} CPUs")
    with Database(base_url) as db:
        if not only or "read" in only:
            bench_reads(db.url)
        if not only or "propagation" in only:
            bench_propagation(db.url)
    if not only or "migration" in only:
        bench_migration(base_url)
    if not only or "lock" in only:
        bench_lock(redis_url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
