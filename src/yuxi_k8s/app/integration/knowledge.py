"""Knowledge bases across replicas: no stale cache written back, every change seen everywhere.

Yuxi-Know 0.6.1 keeps every knowledge base, file and benchmark of a type in each
process (``KnowledgeBase.databases_meta`` / ``files_meta`` / ``benchmarks_meta``,
``yuxi/knowledge/base.py``), loaded once at start, and ``_save_metadata`` writes
that whole cache back (creating rows that are missing) on every index, rename,
query-params change and delete. With two replicas a stale cache brings deleted
knowledge bases and files back and reverts statuses, and a knowledge base made on
one replica is unknown to the other. Here, patched into the application's classes
(no file of the application's is edited; its tables are read and written only
through its own repositories):

- **Write back only what changed, never resurrect.** Each instance keeps the state
  it last read from or wrote to the tables (``synced``). A save writes, per entry,
  only the fields that differ from ``synced`` (a three-way merge: the other
  replicas' fields stay), creates only entries this replica made, and drops an
  entry another replica deleted instead of creating it again. Existence check and
  write run under one cluster-wide lock (a PostgreSQL advisory lock), which the
  application's deletes take too.
- **Every change seen everywhere.** Every write through the application's
  knowledge-base repositories advances ``yuxi_k8s.kb_change_seq``. Before any
  public call of the ``KnowledgeBaseManager`` a replica compares that counter with
  what its cache reflects and reloads (merging: entries it changed and has not yet
  written stay) when behind: a read that starts after another replica
  acknowledged a write sees it. A background refresher does the same every
  ``YUXI_K8S_KB_REFRESH_SECONDS`` (default 0.5) for the synchronous readers (the
  agents' knowledge-base tools call ``get_retrievers``).
- **"Processing" is cluster-wide.** A replica that stores a file as parsing or
  indexing claims it (``yuxi_k8s.kb_processing``, with its replica lease); another
  replica's repair of interrupted files (``_check_and_fix_processing_status``)
  leaves alone the files a live replica claims.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from sqlalchemy import Engine, text

from yuxi_k8s.app.integration import env_seconds
from yuxi_k8s.app.integration.advisory import advisory_lock, held_in_thread
from yuxi_k8s.app.integration.counters import ChangeCounter
from yuxi_k8s.state.errors import error_line
from yuxi_k8s.state.models import KB_CHANGE_SEQUENCE, SCHEMA

log = logging.getLogger("yuxi_k8s.app.knowledge")

REFRESH_ENV = "YUXI_K8S_KB_REFRESH_SECONDS"
# One cluster-wide lock for "check that the row exists, then write it" against deletes:
# pg_advisory_lock keys are 64-bit; this one is the kit's, arbitrary but fixed.
LOCK_KEY = 0x59555849_4B420001
INTERMEDIATE = frozenset({"parsing", "indexing", "processing"})

REQUIRED_KB_ATTRIBUTES = (
    "_load_metadata",
    "_save_metadata",
    "_persist_file",
    "_persist_kb",
    "_normalize_metadata_state",
    "_normalize_timestamp",
    "_processing_files",
    "_is_file_in_processing_queue",
    "_check_and_fix_processing_status",
)
REQUIRED_MANAGER_ATTRIBUTES = ("kb_instances", "_get_kb_for_database", "get_retrievers", "get_databases")
REQUIRED_REPOSITORY_ATTRIBUTES = {
    "KnowledgeBaseRepository": ("create", "update", "delete", "get_by_id"),
    "KnowledgeFileRepository": ("upsert", "delete", "delete_by_db_id", "get_by_file_id"),
    "EvaluationRepository": ("create_benchmark", "delete_benchmark", "get_benchmark"),
}

# What a cached knowledge base / file entry is called in the application's tables (the
# column mapping of its own _persist_kb/_persist_file), with how the value is stored.
KB_COLUMNS = {
    "name": "name",
    "description": "description",
    "kb_type": "kb_type",
    "embed_info": "embed_info",
    "llm_info": "llm_info",
    "query_params": "query_params",
    "metadata": "additional_params",
}
FILE_COLUMNS = {
    "database_id": "db_id",
    "parent_id": "parent_id",
    "filename": "filename",
    "original_filename": "original_filename",
    "file_type": "file_type",
    "path": "path",
    "minio_url": "minio_url",
    "markdown_file": "markdown_file",
    "status": "status",
    "content_hash": "content_hash",
    "size": "file_size",
    "content_type": "content_type",
    "processing_params": "processing_params",
    "is_folder": "is_folder",
    "error": "error_message",
    "created_by": "created_by",
    "updated_by": "updated_by",
}


def changed_keys(mine: dict[str, Any], base: dict[str, Any]) -> list[str]:
    """Keys whose value this replica changed (added, altered or removed) since *base*."""
    return [k for k in sorted(set(mine) | set(base)) if mine.get(k, _ABSENT) != base.get(k, _ABSENT)]


_ABSENT = object()


def merge_entries(
    live: dict[str, dict[str, Any]], fresh: dict[str, dict[str, Any]], synced: dict[str, dict[str, Any]]
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Bring *live* (the cache the application reads and mutates) up to *fresh* (the tables now).

    An entry this replica changed and has not written yet (live differs from synced) is kept
    as it is, to be written by the coming save; an entry another replica deleted is removed;
    any other entry is updated in place (coroutines holding it see the new values). Returns
    the new synced state and the keys removed."""
    new_synced: dict[str, dict[str, Any]] = {}
    removed: list[str] = []
    for key, entry in fresh.items():
        mine, base = live.get(key), synced.get(key)
        if mine is not None and base is not None and mine != base:
            new_synced[key] = base  # changed here: the save's diff still sees the change
            continue
        if mine is None and base is not None:
            continue  # deleted here; the application removes the row itself
        if mine is None:
            live[key] = copy.deepcopy(entry)
        else:
            mine.clear()
            mine.update(copy.deepcopy(entry))
        new_synced[key] = copy.deepcopy(entry)
    for key in [k for k in live if k not in fresh]:
        if key in synced:  # it was in the tables and is gone: deleted on another replica
            del live[key]
            removed.append(key)
    return new_synced, removed


def _flatten_benchmarks(nested: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{db_id}\0{bid}": meta for db_id, items in nested.items() for bid, meta in items.items()}


class Coherence:
    """The kit's side: the change counter, the cluster-wide write lock, the processing claims."""

    def __init__(self, engine: Engine, replica_id: str) -> None:
        self.engine = engine
        self.replica_id = replica_id
        self.changes = ChangeCounter(engine, KB_CHANGE_SEQUENCE)

    def cluster_lock(self) -> contextlib.AbstractContextManager[None]:
        return advisory_lock(self.engine, LOCK_KEY)

    def claim(self, file_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    f"INSERT INTO {SCHEMA}.kb_processing (file_id, replica_id) VALUES (:f, :r) "
                    "ON CONFLICT (file_id) DO UPDATE SET replica_id = EXCLUDED.replica_id, claimed_at = now()"
                ),
                {"f": file_id, "r": self.replica_id},
            )

    def release(self, file_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                text(f"DELETE FROM {SCHEMA}.kb_processing WHERE file_id = :f AND replica_id = :r"),
                {"f": file_id, "r": self.replica_id},
            )

    def left_alone(self, file_ids: Iterable[str]) -> set[str]:
        """Of the files this replica's cache shows parsing or indexing, those its repair must not
        mark interrupted: claimed by a replica with a live lease (this one too), or already
        settled or gone in the application's table (the cache is older than the row).

        One statement, so one snapshot: a replica writes a file's new status before it gives up
        its claim, so a snapshot that misses the claim sees the status."""
        ids = list(file_ids)
        if not ids:
            return set()
        in_flight = ", ".join(f"'{status}'" for status in sorted(INTERMEDIATE))
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT i.file_id FROM unnest(CAST(:ids AS text[])) AS i(file_id) "
                    "LEFT JOIN knowledge_files f ON f.file_id = i.file_id "
                    f"WHERE f.file_id IS NULL OR f.status NOT IN ({in_flight}) OR EXISTS ("
                    f"SELECT 1 FROM {SCHEMA}.kb_processing c JOIN {SCHEMA}.replicas r USING (replica_id) "
                    "WHERE c.file_id = i.file_id AND r.lease_until > now())"
                ),
                {"ids": ids},
            )
            return {row[0] for row in rows}

    def release_all(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                text(f"DELETE FROM {SCHEMA}.kb_processing WHERE replica_id = :r"), {"r": self.replica_id}
            )


# Set while this task holds the cluster lock (the application's delete inside a guarded
# section must not wait for it again) and while a manager call already checked freshness.
_holding_lock: contextvars.ContextVar[bool] = contextvars.ContextVar("yuxi_k8s_kb_lock", default=False)
_checked: contextvars.ContextVar[bool] = contextvars.ContextVar("yuxi_k8s_kb_checked", default=False)


class KnowledgeBinding:
    """Patches the application's knowledge-base classes; one per process."""

    def __init__(
        self,
        coherence: Coherence,
        *,
        kb_cls: Any,
        manager_cls: Any,
        manager: Any,
        repositories: dict[str, Any],
        sanitize_params: Callable[[Any], Any],
    ) -> None:
        self.coherence = coherence
        self.kb_cls = kb_cls
        self.manager_cls = manager_cls
        self.manager = manager
        self.repos = repositories
        self.sanitize = sanitize_params
        self.interval = env_seconds(REFRESH_ENV, 0.5)
        self._thread_lock: asyncio.Lock | None = None
        self._instance_locks: dict[int, asyncio.Lock] = {}
        self._refresher: asyncio.Task[None] | None = None
        self.reloads = 0
        self.resurrections_refused = 0

    # --- the lock and the counter, from the event loop -------------------------------------
    @contextlib.asynccontextmanager
    async def guarded(self) -> AsyncIterator[None]:
        """The cluster-wide write lock (one waiter per process blocks a thread, the rest await)."""
        if _holding_lock.get():
            yield
            return
        if self._thread_lock is None:
            self._thread_lock = asyncio.Lock()
        async with held_in_thread(self._thread_lock, self.coherence.cluster_lock()):
            token = _holding_lock.set(True)
            try:
                yield
            finally:
                _holding_lock.reset(token)

    async def advance(self) -> None:
        try:
            await asyncio.to_thread(self.coherence.changes.advance)
        except Exception as exc:  # the row is written; other replicas then see it at their next reload
            log.warning("could not advance the knowledge-base change counter: %s", error_line(exc))

    # --- freshness ---------------------------------------------------------------------------
    def _lock_for(self, instance: Any) -> asyncio.Lock:
        return self._instance_locks.setdefault(id(instance), asyncio.Lock())

    async def ensure_fresh(self, instances: Iterable[Any], current: int | None = None) -> None:
        self.start_refresher()
        if current is None:
            current = await asyncio.to_thread(self.coherence.changes.current)
        for instance in list(instances):
            if getattr(instance, "_yuxi_k8s_seq", -1) >= current:
                continue
            async with self._lock_for(instance):
                if getattr(instance, "_yuxi_k8s_seq", -1) < current:
                    await instance._load_metadata()

    def start_refresher(self) -> None:
        if self._refresher is not None and not self._refresher.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._refresher = loop.create_task(self._refresh_forever(), name="yuxi-k8s-kb-refresh")

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.ensure_fresh(self.manager.kb_instances.values())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the next round tries again; callers check for themselves
                log.warning("knowledge-base refresh failed: %s", error_line(exc))

    # --- the patches -------------------------------------------------------------------------
    def install(self) -> None:
        binding = self
        kb_cls, manager_cls = self.kb_cls, self.manager_cls
        original_load = kb_cls._load_metadata
        original_persist_file = kb_cls._persist_file
        original_persist_kb = kb_cls._persist_kb
        original_check = kb_cls._check_and_fix_processing_status
        original_in_queue = kb_cls._is_file_in_processing_queue.__func__
        claimed_elsewhere: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
            "yuxi_k8s_claimed", default=frozenset()
        )

        # The application's loader fills a shadow, not the live cache, which coroutines read meanwhile.
        # Not a copy of the instance: MilvusKB.__del__ disconnects the connection the copy shares.
        shadow_cls = type(
            "KnowledgeShadow",
            (),
            {
                "_normalize_timestamp": staticmethod(kb_cls._normalize_timestamp),
                "_normalize_metadata_state": kb_cls._normalize_metadata_state,
            },
        )

        async def _load_metadata(self: Any) -> None:
            seq = await asyncio.to_thread(binding.coherence.changes.current)
            shadow = shadow_cls()
            shadow.kb_type = self.kb_type
            await original_load(shadow)
            shadow._normalize_metadata_state()
            synced = getattr(self, "_yuxi_k8s_synced", None) or {"kb": {}, "file": {}, "bench": {}}
            kb_synced, kb_removed = merge_entries(self.databases_meta, shadow.databases_meta, synced["kb"])
            file_synced, file_removed = merge_entries(self.files_meta, shadow.files_meta, synced["file"])
            bench_live = _flatten_benchmarks(self.benchmarks_meta)
            bench_synced, _ = merge_entries(
                bench_live, _flatten_benchmarks(shadow.benchmarks_meta), synced["bench"]
            )
            nested: dict[str, dict[str, Any]] = {}
            for key, meta in bench_live.items():
                db_id, _, bid = key.partition("\0")
                nested.setdefault(db_id, {})[bid] = meta
            self.benchmarks_meta = nested
            self._yuxi_k8s_synced = {"kb": kb_synced, "file": file_synced, "bench": bench_synced}
            self._yuxi_k8s_seq = seq
            self._yuxi_k8s_loaded = True
            self._metadata_loaded = True
            binding.reloads += 1
            if kb_removed or file_removed:
                log.info(
                    "%s: dropped what other replicas deleted: %d knowledge base(s), %d file(s)",
                    self.kb_type,
                    len(kb_removed),
                    len(file_removed),
                )

        async def _persist_kb(self: Any, db_id: str) -> None:
            await binding.write_kb(self, db_id, original_persist_kb)

        async def _persist_file(self: Any, file_id: str) -> None:
            await binding.write_file(self, file_id, original_persist_file)

        async def _save_metadata(self: Any) -> None:
            self._normalize_metadata_state()
            for db_id in list(self.databases_meta):
                await binding.write_kb(self, db_id, original_persist_kb)
            for file_id in list(self.files_meta):
                await binding.write_file(self, file_id, original_persist_file)
            await binding.write_new_benchmarks(self)

        def _check_and_fix_processing_status(self: Any, db_id: str) -> None:
            candidates = [
                fid
                for fid, info in self.files_meta.items()
                if info.get("database_id") == db_id and info.get("status") in INTERMEDIATE
            ]
            # In flight, not orphaned: claimed by a live replica (this one included: the
            # application adds a file to its in-memory queue only after the status is saved,
            # and a read in between would mark its own work as interrupted), settled in the
            # table since this cache was read, or set here and not yet written (the save waits
            # for the cluster lock).
            synced = (getattr(self, "_yuxi_k8s_synced", None) or {}).get("file", {})
            unsaved = {
                fid
                for fid in candidates
                if (synced.get(fid) or {}).get("status") != self.files_meta[fid].get("status")
            }
            others = binding.coherence.left_alone(candidates) if candidates else set()
            token = claimed_elsewhere.set(frozenset(others | unsaved))
            try:
                original_check(self, db_id)
            finally:
                claimed_elsewhere.reset(token)

        def _is_file_in_processing_queue(cls: Any, file_id: str) -> bool:
            return bool(original_in_queue(cls, file_id)) or file_id in claimed_elsewhere.get()

        kb_cls._load_metadata = _load_metadata
        kb_cls._persist_kb = _persist_kb
        kb_cls._persist_file = _persist_file
        kb_cls._save_metadata = _save_metadata
        kb_cls._check_and_fix_processing_status = _check_and_fix_processing_status
        kb_cls._is_file_in_processing_queue = classmethod(_is_file_in_processing_queue)

        self._patch_manager(manager_cls)
        self._patch_repositories()

    def _patch_manager(self, manager_cls: Any) -> None:
        binding = self
        original_get_kb = manager_cls._get_kb_for_database
        original_retrievers = manager_cls.get_retrievers

        async def _get_kb_for_database(self: Any, db_id: str) -> Any:
            instance = await original_get_kb(self, db_id)
            # Within a checked call only an instance made just now (never loaded) needs a load.
            if not _checked.get() or not getattr(instance, "_yuxi_k8s_loaded", False):
                await binding.ensure_fresh([instance])
            return instance

        def get_retrievers(self: Any) -> dict[str, dict[str, Any]]:
            binding.start_refresher()  # synchronous: fresh within the refresher's interval
            return original_retrievers(self)  # type: ignore[no-any-return]

        def fresh_first(method: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(method)
            async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
                if _checked.get():
                    return await method(self, *args, **kwargs)
                await binding.ensure_fresh(self.kb_instances.values())
                token = _checked.set(True)
                try:
                    return await method(self, *args, **kwargs)
                finally:
                    _checked.reset(token)

            return wrapper

        for name, method in list(vars(manager_cls).items()):
            if not name.startswith("_") and inspect.iscoroutinefunction(method):
                setattr(manager_cls, name, fresh_first(method))
        manager_cls._get_kb_for_database = _get_kb_for_database
        manager_cls.get_retrievers = get_retrievers

    def _patch_repositories(self) -> None:
        binding = self

        def counted(method: Callable[..., Any], *, lock: bool) -> Callable[..., Any]:
            @functools.wraps(method)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                if lock:
                    async with binding.guarded():
                        result = await method(*args, **kwargs)
                else:
                    result = await method(*args, **kwargs)
                await binding.advance()
                return result

            return wrapper

        kb_repo = self.repos["KnowledgeBaseRepository"]
        file_repo = self.repos["KnowledgeFileRepository"]
        eval_repo = self.repos["EvaluationRepository"]
        kb_repo.create = counted(kb_repo.create, lock=False)
        kb_repo.update = counted(kb_repo.update, lock=False)
        kb_repo.delete = counted(kb_repo.delete, lock=True)
        file_repo.upsert = counted(file_repo.upsert, lock=False)
        file_repo.delete = counted(file_repo.delete, lock=True)
        file_repo.delete_by_db_id = counted(file_repo.delete_by_db_id, lock=True)
        eval_repo.create_benchmark = counted(eval_repo.create_benchmark, lock=False)
        eval_repo.delete_benchmark = counted(eval_repo.delete_benchmark, lock=True)

    # --- the writers -------------------------------------------------------------------------
    @staticmethod
    def _synced(instance: Any, kind: str) -> dict[str, dict[str, Any]]:
        synced = getattr(instance, "_yuxi_k8s_synced", None)
        if synced is None:
            synced = {"kb": {}, "file": {}, "bench": {}}
            instance._yuxi_k8s_synced = synced
        return synced[kind]  # type: ignore[no-any-return]

    def _kb_value(self, instance: Any, db_id: str, key: str, meta: dict[str, Any]) -> Any:
        if key == "name":
            return meta.get("name") or db_id
        if key == "kb_type":
            return meta.get("kb_type") or instance.kb_type
        if key == "metadata":
            return meta.get("metadata") or {}
        return meta.get(key)

    def _file_value(self, key: str, meta: dict[str, Any]) -> Any:
        value = meta.get(key)
        if key == "filename":
            return value or ""
        if key == "processing_params":
            return self.sanitize(value)
        if key == "is_folder":
            return meta.get("is_folder", False)
        if key in ("created_by", "updated_by"):
            return str(value) if value else None
        return value

    async def write_kb(self, instance: Any, db_id: str, create: Callable[..., Any]) -> None:
        meta = instance.databases_meta.get(db_id)
        synced = self._synced(instance, "kb")
        base = synced.get(db_id)
        if meta is None or meta == base:
            return
        async with self.guarded():
            if base is None:  # made on this replica: the application's own create-or-update
                await create(instance, db_id)
            else:
                changes = {
                    KB_COLUMNS[k]: self._kb_value(instance, db_id, k, meta)
                    for k in changed_keys(meta, base)
                    if k in KB_COLUMNS
                }
                if changes and await self.repos["KnowledgeBaseRepository"]().update(db_id, changes) is None:
                    self._forget(instance.databases_meta, synced, db_id, "knowledge base")
                    return
        synced[db_id] = copy.deepcopy(meta)

    async def write_file(self, instance: Any, file_id: str, create: Callable[..., Any]) -> None:
        meta = instance.files_meta.get(file_id)
        synced = self._synced(instance, "file")
        base = synced.get(file_id)
        if meta is None or not meta.get("database_id") or meta == base:
            return
        status = meta.get("status")
        async with self.guarded():
            repo = self.repos["KnowledgeFileRepository"]()
            if base is None:
                await self._claim_in_flight(file_id, status)
                await create(instance, file_id)
            else:
                changes = {
                    FILE_COLUMNS[k]: self._file_value(k, meta)
                    for k in changed_keys(meta, base)
                    if k in FILE_COLUMNS
                }
                if changes:
                    if await repo.get_by_file_id(file_id) is None:
                        self._forget(instance.files_meta, synced, file_id, "file")
                        return
                    await self._claim_in_flight(file_id, status)
                    await repo.upsert(file_id, changes)  # on an existing row: only these columns
            # The claim goes only once the settled status is written: another replica's repair
            # that no longer sees the claim then sees the status (Coherence.left_alone).
            if status not in INTERMEDIATE:
                await asyncio.to_thread(self.coherence.release, file_id)
        synced[file_id] = copy.deepcopy(meta)

    async def _claim_in_flight(self, file_id: str, status: Any) -> None:
        if status in INTERMEDIATE:
            await asyncio.to_thread(self.coherence.claim, file_id)

    async def write_new_benchmarks(self, instance: Any) -> None:
        synced = self._synced(instance, "bench")
        repo = self.repos["EvaluationRepository"]()
        for key, meta in _flatten_benchmarks(instance.benchmarks_meta).items():
            if key in synced:
                continue  # the application only ever creates benchmarks here
            db_id, _, benchmark_id = key.partition("\0")
            async with self.guarded():
                if await repo.get_benchmark(benchmark_id) is None:
                    await repo.create_benchmark(
                        {
                            "benchmark_id": benchmark_id,
                            "db_id": db_id,
                            "name": meta.get("name") or benchmark_id,
                            "description": meta.get("description"),
                            "question_count": int(meta.get("question_count") or 0),
                            "has_gold_chunks": bool(meta.get("has_gold_chunks")),
                            "has_gold_answers": bool(meta.get("has_gold_answers")),
                            "data_file_path": meta.get("benchmark_file"),
                            "created_by": str(meta.get("created_by")) if meta.get("created_by") else None,
                        }
                    )
            synced[key] = copy.deepcopy(meta)

    def _forget(self, live: dict[str, Any], synced: dict[str, Any], key: str, what: str) -> None:
        live.pop(key, None)
        synced.pop(key, None)
        self.resurrections_refused += 1
        log.info("not writing %s %s back: another replica deleted it", what, key)

    def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        try:
            self.coherence.release_all()
        except Exception as exc:
            log.warning(
                "could not give up the processing claims (they lapse with the lease): %s", error_line(exc)
            )
