"""The uploaded graph's embedding model, fixed once for every replica (row 5).

Yuxi-Know 0.6.1's graph service (``UploadGraphService``, one per process, made when the
app imports ``yuxi.knowledge``) reads ``saves/knowledge_graph/neo4j/graph_info.json``
once, at start: the embedding model of the graph in Neo4j and whether it may still be
chosen (``is_initialized_from_file``). The first upload writes that file; a replica
started before it still lets a user pick another model, and its upload then embeds
entities of the same graph (one vector index of one dimension) with that other model.

Here every upload (``jsonl_file_add_entity``) and every indexing of missing embeddings
(``add_embedding_to_nodes``) runs under one cluster-wide PostgreSQL advisory lock and
reads ``graph_info.json`` again first, so the model is decided by whatever any replica
wrote, and the first upload's choice is written before another replica decides. The
graph's info (``get_graph_info``, what the upload dialog shows) reads the file again too,
and so does a query (``query_node``: the graph page's search and the agent's graph tool
embed the query with the graph's model, which a replica started before the first upload
never loaded: its query failed on ``None.encode`` until something read the info).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from yuxi_k8s.app.integration.advisory import advisory_lock, held_in_thread

log = logging.getLogger("yuxi_k8s.app.graph")

LOCK_KEY = 0x59555849_47524150  # pg_advisory_lock: the kit's, arbitrary but fixed ("YUXIGRAP")
WRITERS = ("jsonl_file_add_entity", "add_embedding_to_nodes")
READERS = ("get_graph_info", "query_node")  # sync, on the event loop: a stat, and a read when it changed
REQUIRED_ATTRIBUTES = ("load_graph_info", *READERS, *WRITERS)  # and each instance's work_dir


class GraphLock:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def held(self) -> contextlib.AbstractContextManager[None]:
        return advisory_lock(self.engine, LOCK_KEY)


def missing_attributes(service_cls: Any) -> list[str]:
    return [f"UploadGraphService.{n}" for n in REQUIRED_ATTRIBUTES if not hasattr(service_cls, n)]


INFO_FILE = "graph_info.json"


def read_again(service: Any, *, force: bool) -> None:
    """The app's own ``load_graph_info``, when the file changed since this process last read it."""
    try:
        stat = os.stat(os.path.join(service.work_dir, INFO_FILE))
    except FileNotFoundError:
        return  # no upload yet anywhere: the model may still be chosen
    stamp = (stat.st_mtime_ns, stat.st_size)
    if not force and getattr(service, "_yuxi_k8s_info_stamp", None) == stamp:
        return
    if service.load_graph_info():  # False: unreadable (being written): read again next time
        service._yuxi_k8s_info_stamp = stamp


def install(service_cls: Any, lock: GraphLock) -> None:
    """Patch the application's ``UploadGraphService`` class (its one instance included)."""
    local = asyncio.Lock()

    def serialized(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            async with held_in_thread(local, lock.held()):
                await asyncio.to_thread(read_again, self, force=True)  # what any replica wrote decides
                return await method(self, *args, **kwargs)

        return wrapper

    def current(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            read_again(self, force=False)  # the model every replica uses, once one was chosen
            return method(self, *args, **kwargs)

        return wrapper

    for name in WRITERS:
        setattr(service_cls, name, serialized(getattr(service_cls, name)))
    for name in READERS:
        setattr(service_cls, name, current(getattr(service_cls, name)))
    log.debug("graph uploads serialized across replicas; graph_info.json read before each, info and query")
