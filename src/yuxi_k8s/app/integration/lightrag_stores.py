"""LightRAG knowledge bases across replicas: one writer per knowledge base, stale stores reloaded (row 4).

Yuxi-Know 0.6.1 makes LightRAG (its default knowledge-base type) keep the graph in
Neo4j and the vectors in Milvus, both shared, but the documents, chunks, entity and
relation lists, LLM cache and each document's status in JSON files under
``saves/knowledge_base_data/lightrag_data/<db>/<db>/`` (``JsonKVStorage``,
``JsonDocStatusStorage``). Each process loads those files once into memory
(``LightRagKB.instances``, one LightRAG per knowledge base) and writes its whole copy
back after every ingest or delete, guarded only by an asyncio lock: two replicas
ingesting into one knowledge base overwrite each other's files, and an instance never
sees another replica's documents. Here, patched into the application's classes:

- **One writer per knowledge base.** ``LightRagKB.index_file``, ``update_content``,
  ``delete_file``, ``delete_file_chunks_only`` and ``delete_database`` run under a PostgreSQL
  advisory lock keyed by the knowledge base (one waiting thread per process and knowledge base).
- **A write count per knowledge base.** After each such call ``yuxi_k8s.lightrag_changes``
  counts one more write; the writer's own instance is then current.
- **Stale stores reloaded.** Every time the application takes a knowledge base's
  LightRAG instance (``_get_lightrag_instance``: every ingest, delete, query, content
  read) it compares the count with what the instance last read and, when behind, reloads
  each JSON store from its file in place (the shared dict LightRAG's storages read).
- **Files written whole, only by the writer.** A JSON store writes its file (atomically:
  a temporary file renamed over it, so a reader never sees half a file) only inside the
  knowledge base's lock. Outside it (a query's LLM-cache entries) nothing is written:
  it would put this process's copy over another replica's writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

from sqlalchemy import Engine, text

from yuxi_k8s.app.integration.advisory import advisory_lock, held_in_thread
from yuxi_k8s.state.errors import error_line
from yuxi_k8s.state.models import SCHEMA

log = logging.getLogger("yuxi_k8s.app.lightrag")

# pg_advisory_lock(int4, int4): this class id (the kit's, arbitrary but fixed), hashtext(db_id).
LOCK_CLASS = 0x594B4C52
# delete_database too: run while another replica ingests, that ingest wrote the deleted
# knowledge base's stores back afterwards (LightRagKB's is sync and returns the base's coroutine).
WRITERS = ("index_file", "update_content", "delete_file", "delete_file_chunks_only", "delete_database")
REQUIRED_KB_ATTRIBUTES = ("instances", "_get_lightrag_instance", *WRITERS)
REQUIRED_STORE_ATTRIBUTES = ("index_done_callback", "initialize")
# Set on each JSON store by its __post_init__/initialize in lightrag-hku 1.4.13: what a reload needs.
STORE_FIELDS = ("_file_name", "_data", "_storage_lock", "workspace")

# The knowledge bases whose lock this task holds (a writer calling another writer takes it once).
_held: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "yuxi_k8s_lightrag", default=frozenset()
)


class StoreChanges:
    """The kit's side: the per-knowledge-base lock and write count in PostgreSQL."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def locked(self, db_id: str) -> contextlib.AbstractContextManager[None]:
        return advisory_lock(self.engine, LOCK_CLASS, db_id)

    def current(self, db_id: str) -> int:
        with self.engine.connect() as conn:
            value = conn.execute(
                text(f"SELECT seq FROM {SCHEMA}.lightrag_changes WHERE db_id = :d"), {"d": db_id}
            ).scalar()
        return int(value or 0)

    def advance(self, db_id: str) -> int:
        with self.engine.begin() as conn:
            return int(
                conn.execute(
                    text(
                        f"INSERT INTO {SCHEMA}.lightrag_changes (db_id, seq) VALUES (:d, 1) "
                        "ON CONFLICT (db_id) DO UPDATE SET seq = lightrag_changes.seq + 1, "
                        "changed_at = now() RETURNING seq"
                    ),
                    {"d": db_id},
                ).scalar_one()
            )


def atomic(write_json: Callable[[Any, str], bool]) -> Callable[[Any, str], bool]:
    """LightRAG's ``write_json`` into a temporary file renamed over the target: all or nothing."""

    @functools.wraps(write_json)
    def write(obj: Any, file_name: str) -> bool:
        temporary = f"{file_name}.{os.getpid()}.tmp"
        try:
            needs_reload = write_json(obj, temporary)
            os.replace(temporary, file_name)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
        return needs_reload

    return write


class LightRagBinding:
    """Patches ``LightRagKB`` and LightRAG's JSON storages; one per process."""

    def __init__(
        self,
        changes: StoreChanges,
        *,
        kb_cls: Any,
        store_classes: tuple[Any, ...],
        store_modules: tuple[Any, ...],
        load_json: Callable[[str], Any],
    ) -> None:
        self.changes = changes
        self.kb_cls = kb_cls
        self.store_classes = store_classes
        self.store_modules = store_modules
        self.load_json = load_json
        self._local: dict[str, asyncio.Lock] = {}
        self._reloading: dict[str, asyncio.Lock] = {}
        self.reloads = 0
        self.skipped_writes = 0

    # --- the lock -----------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def writing(self, kb: Any, db_id: str) -> AsyncIterator[None]:
        """The knowledge base's cluster-wide lock; afterwards one more write counted."""
        if db_id in _held.get():
            yield
            return
        local = self._local.setdefault(db_id, asyncio.Lock())
        async with held_in_thread(local, self.changes.locked(db_id)):
            token = _held.set(_held.get() | {db_id})
            try:
                yield
            finally:
                _held.reset(token)
                try:
                    seq = await asyncio.to_thread(self.changes.advance, db_id)
                except Exception as exc:  # the files are written; others reload at the next count
                    log.warning("could not count a LightRAG write of %s: %s", db_id, error_line(exc))
                else:
                    instance = getattr(kb, "instances", {}).get(db_id)
                    if instance is not None:  # this process wrote the files from this very copy
                        instance._yuxi_k8s_seq = seq

    # --- freshness ------------------------------------------------------------------------------
    def _stores(self, rag: Any) -> list[Any]:
        return [v for v in vars(rag).values() if isinstance(v, self.store_classes)]

    async def ensure_fresh(self, rag: Any, db_id: str) -> None:
        current = await asyncio.to_thread(self.changes.current, db_id)
        if getattr(rag, "_yuxi_k8s_seq", -1) >= current:
            return
        async with self._reloading.setdefault(db_id, asyncio.Lock()):
            if getattr(rag, "_yuxi_k8s_seq", -1) >= current:
                return
            for store in self._stores(rag):
                await self._reload(store)
            rag._yuxi_k8s_seq = current
            self.reloads += 1
            log.info("%s: LightRAG stores reloaded (write %d, made by any replica)", db_id, current)

    async def _reload(self, store: Any) -> None:
        missing = [name for name in STORE_FIELDS if getattr(store, name, None) is None]
        if missing:
            raise RuntimeError(f"{type(store).__name__} lacks {', '.join(missing)}: cannot reload it")
        async with store._storage_lock:
            fresh = await asyncio.to_thread(self.load_json, store._file_name)
            store._data.clear()
            store._data.update(fresh or {})
            flag = getattr(store, "storage_updated", None)
            if flag is not None:
                flag.value = False  # the memory is the file now: nothing to write back

    # --- the patches ----------------------------------------------------------------------------
    def install(self) -> None:
        binding = self
        kb_cls = self.kb_cls
        original_get = kb_cls._get_lightrag_instance

        async def _get_lightrag_instance(self: Any, db_id: str) -> Any:
            rag = await original_get(self, db_id)
            if rag is not None:
                await binding.ensure_fresh(rag, db_id)
            return rag

        def serialized(method: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(method)
            async def wrapper(self: Any, db_id: str, *args: Any, **kwargs: Any) -> Any:
                async with binding.writing(self, db_id):
                    return await method(self, db_id, *args, **kwargs)

            return wrapper

        kb_cls._get_lightrag_instance = _get_lightrag_instance
        for name in WRITERS:
            setattr(kb_cls, name, serialized(getattr(kb_cls, name)))

        for store_cls in self.store_classes:
            store_cls.index_done_callback = self._gated(store_cls.index_done_callback)
        for module in self.store_modules:
            module.write_json = atomic(module.write_json)

    def _gated(self, original: Callable[..., Any]) -> Callable[..., Any]:
        binding = self

        @functools.wraps(original)
        async def index_done_callback(store: Any) -> None:
            workspace = getattr(store, "workspace", "")
            if workspace in _held.get():
                await original(store)
                return
            flag = getattr(store, "storage_updated", None)
            if flag is not None and flag.value:
                binding.skipped_writes += 1
                namespace = str(getattr(store, "namespace", "?"))
                log.log(
                    logging.DEBUG if namespace.endswith("_cache") else logging.INFO,
                    "%s: not writing LightRAG's %s outside the knowledge base's lock (kept in memory)",
                    workspace,
                    namespace,
                )

        return index_done_callback
