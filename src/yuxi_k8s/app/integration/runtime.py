"""Start database mode inside the application's process: guard the version, bind, patch.

Order matters and is all-or-nothing up to the first patch: the version and
every attribute the patches need are checked first, then the store is opened
(schema at head, cache loaded); only then are the application's classes patched.
A failure before that point leaves the application untouched and the process
stops with one line.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from yuxi_k8s.app.integration import (
    SUPPORTED_VERSIONS,
    chat_runs,
    graph_upload,
    knowledge,
    lightrag_stores,
    logs,
    oidc,
    sandboxes,
    skills,
    subagents,
)
from yuxi_k8s.app.integration.app_redis import app_redis_url
from yuxi_k8s.app.integration.settings_binding import REQUIRED_CONFIG_ATTRIBUTES, SettingsBinding
from yuxi_k8s.app.integration.startup import StartupLock
from yuxi_k8s.app.integration.tasks import REQUIRED_TASKER_ATTRIBUTES, ReplicaLease
from yuxi_k8s.state import DistributedConfig, SchemaError, Settings, StateUnavailableError, open_config
from yuxi_k8s.state.lock import redis_client

log = logging.getLogger("yuxi_k8s.app")


class IntegrationError(RuntimeError):
    """Database mode cannot start; nothing of the application was changed."""


@dataclass
class Runtime:
    settings: Settings
    store: DistributedConfig
    binding: SettingsBinding
    lease: ReplicaLease | None
    knowledge: knowledge.KnowledgeBinding | None = None
    startup_lock: StartupLock = field(init=False)

    def __post_init__(self) -> None:
        self.startup_lock = StartupLock(self.store.engine)  # type: ignore[attr-defined]

    def catch_up(self) -> None:
        """Before a request: settings another replica acknowledged are applied here first."""
        if self.store.catch_up():
            self.binding.apply()

    def close(self) -> None:
        """Idempotent: the ASGI lifespan and the entry point may both call it."""
        global ACTIVE
        if ACTIVE is not self:
            return
        ACTIVE = None
        log.info("database mode off: releasing the replica lease and the store")
        self.binding.stop()
        if self.knowledge is not None:
            self.knowledge.stop()
        self.startup_lock.release()
        if self.lease is not None:
            self.lease.stop()
        self.store.close()


ACTIVE: Runtime | None = None


def app_version() -> str:
    try:
        return importlib.metadata.version("yuxi")
    except importlib.metadata.PackageNotFoundError:
        raise IntegrationError(
            "no Yuxi-Know installed here (package 'yuxi' not found): run this in the api image "
            "that `yuxi-k8s images build` produces"
        ) from None


def check_version() -> str:
    version = app_version()
    if version not in SUPPORTED_VERSIONS:
        raise IntegrationError(
            f"Yuxi-Know {version} is not supported by this kit's database mode "
            f"(supported: {', '.join(SUPPORTED_VERSIONS)}); deploy a supported image or use CONFIG_MODE=file"
        )
    return version


def _missing(obj: Any, names: tuple[str, ...]) -> list[str]:
    return [n for n in names if not hasattr(obj, n)]


STORE_WAIT_ENV = "YUXI_K8S_STORE_WAIT_SECONDS"


def _store_wait_s() -> float:
    raw = os.environ.get(STORE_WAIT_ENV) or "120"
    try:
        return float(raw)
    except ValueError:
        raise IntegrationError(f"{STORE_WAIT_ENV} must be a number of seconds, not {raw!r}") from None


def _open_store(settings: Settings) -> DistributedConfig:
    """Open the store, waiting (bounded) while the database is not up yet or the migrate Job has
    not brought the kit's schema to head: on a first deploy the api starts beside both."""
    deadline = time.monotonic() + _store_wait_s()
    while True:
        try:
            return open_config(settings)
        except (SchemaError, StateUnavailableError) as exc:
            if time.monotonic() >= deadline:
                raise
            log.warning("waiting for the kit's store (%s)", exc)
            time.sleep(2)


def wait_for_exported_settings(settings: Settings) -> None:
    """File mode after database mode: start the app only once its files hold every change of the
    kit's store. Applied all at once, a switch to file mode starts new pods beside the migrate Job
    that exports the store; a pod that read saves/ before the export would serve (and save) the old
    settings. Waits as long as the store wait (bounded, logged), then stops with one line."""
    if not settings.database_url:
        return
    from yuxi_k8s.transfer.service import TransferError, unsynced_changes

    deadline = time.monotonic() + _store_wait_s()
    while True:
        try:
            missing = unsynced_changes(settings.database_url)
        except TransferError as exc:  # the database or the kit's schema not up yet
            reason = str(exc)
            if time.monotonic() >= deadline:
                raise IntegrationError(f"file mode: is saves/ current? {reason}") from None
        else:
            if missing is None:
                return
            reason = missing.describe()
            if time.monotonic() >= deadline:
                raise IntegrationError(
                    f"file mode: {reason}; export it first (`yuxi-k8s export-config --saves-dir "
                    f"{settings.save_dir}`, what the migrate Job of components/file-mode does) or let "
                    f"the files win (`yuxi-k8s migrate-config --force`)"
                )
        log.warning("file mode: waiting for the migrate Job to export the kit's store to saves/ (%s)", reason)
        time.sleep(2)


def _import_all(names: dict[str, str]) -> dict[str, Any]:
    return {key: importlib.import_module(name) for key, name in names.items()}


def _knowledge_modules() -> dict[str, Any]:
    """The application's knowledge-base modules (importing them is what the app itself does)."""
    names = {
        "base": "yuxi.knowledge.base",
        "manager": "yuxi.knowledge.manager",
        "package": "yuxi.knowledge",
        "utils": "yuxi.knowledge.utils",
        "KnowledgeBaseRepository": "yuxi.repositories.knowledge_base_repository",
        "KnowledgeFileRepository": "yuxi.repositories.knowledge_file_repository",
        "EvaluationRepository": "yuxi.repositories.evaluation_repository",
    }
    return _import_all(names)


def _missing_knowledge(modules: dict[str, Any]) -> list[str]:
    missing = [
        f"KnowledgeBase.{n}"
        for n in _missing(modules["base"].KnowledgeBase, knowledge.REQUIRED_KB_ATTRIBUTES)
    ]
    manager_cls = modules["manager"].KnowledgeBaseManager
    missing += [
        f"KnowledgeBaseManager.{n}"
        for n in _missing(manager_cls, knowledge.REQUIRED_MANAGER_ATTRIBUTES)
        if n != "kb_instances"  # an instance attribute: checked on the app's one manager below
    ]
    if not hasattr(modules["package"], "knowledge_base"):
        missing.append("yuxi.knowledge.knowledge_base")
    if not hasattr(modules["utils"], "sanitize_processing_params"):
        missing.append("yuxi.knowledge.utils.sanitize_processing_params")
    for cls_name, attributes in knowledge.REQUIRED_REPOSITORY_ATTRIBUTES.items():
        cls = getattr(modules[cls_name], cls_name, None)
        missing += [f"{cls_name}.{n}" for n in (attributes if cls is None else _missing(cls, attributes))]
    return missing


def _bind_knowledge(modules: dict[str, Any], coherence: knowledge.Coherence) -> knowledge.KnowledgeBinding:
    binding = knowledge.KnowledgeBinding(
        coherence,
        kb_cls=modules["base"].KnowledgeBase,
        manager_cls=modules["manager"].KnowledgeBaseManager,
        manager=modules["package"].knowledge_base,
        repositories={
            name: getattr(modules[name], name) for name in knowledge.REQUIRED_REPOSITORY_ATTRIBUTES
        },
        sanitize_params=modules["utils"].sanitize_processing_params,
    )
    binding.install()
    return binding


def _graph_modules() -> dict[str, Any]:
    """LightRAG's and the graph service's modules; none in LITE_MODE, where the app imports neither."""
    if os.environ.get("LITE_MODE", "").lower() in ("true", "1"):  # the app's own test (yuxi/knowledge)
        return {}
    names = {
        "lightrag_kb": "yuxi.knowledge.implementations.lightrag",
        "json_kv": "lightrag.kg.json_kv_impl",
        "json_doc_status": "lightrag.kg.json_doc_status_impl",
        "lightrag_utils": "lightrag.utils",
        "graph_service": "yuxi.knowledge.graphs.upload_graph_service",
    }
    return _import_all(names)


def _missing_graph(modules: dict[str, Any]) -> list[str]:
    if not modules:
        return []
    kb_cls = getattr(modules["lightrag_kb"], "LightRagKB", None)
    missing = [f"LightRagKB.{n}" for n in lightrag_stores.REQUIRED_KB_ATTRIBUTES if n != "instances"]
    if kb_cls is not None:
        missing = [m for m in missing if not hasattr(kb_cls, m.partition(".")[2])]
    for key, cls_name in (("json_kv", "JsonKVStorage"), ("json_doc_status", "JsonDocStatusStorage")):
        cls = getattr(modules[key], cls_name, None)
        names = lightrag_stores.REQUIRED_STORE_ATTRIBUTES
        missing += [f"{cls_name}.{n}" for n in (names if cls is None else _missing(cls, names))]
        if not hasattr(modules[key], "write_json"):
            missing.append(f"{modules[key].__name__}.write_json")
    if not hasattr(modules["lightrag_utils"], "load_json"):
        missing.append("lightrag.utils.load_json")
    service_cls = getattr(modules["graph_service"], "UploadGraphService", None)
    missing += ["UploadGraphService"] if service_cls is None else graph_upload.missing_attributes(service_cls)
    return missing


def _bind_graph(modules: dict[str, Any], engine: Any) -> None:
    if not modules:
        return
    lightrag_stores.LightRagBinding(
        lightrag_stores.StoreChanges(engine),
        kb_cls=modules["lightrag_kb"].LightRagKB,
        store_classes=(modules["json_kv"].JsonKVStorage, modules["json_doc_status"].JsonDocStatusStorage),
        store_modules=(modules["json_kv"], modules["json_doc_status"]),
        load_json=modules["lightrag_utils"].load_json,
    ).install()
    graph_upload.install(modules["graph_service"].UploadGraphService, graph_upload.GraphLock(engine))


def start(*, with_tasks: bool) -> Runtime:
    """Guard, open the store, bind the app's Config (and the Tasker for the api). Idempotent."""
    global ACTIVE
    if ACTIVE is not None:
        return ACTIVE
    version = check_version()
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        raise IntegrationError(str(exc)) from None
    mask = logs.mask_credentials()  # from here on no log line carries a credential
    try:
        with logs.own_sinks(mask) as log_file:  # the app's log sinks: stdout and this process's file
            app_config = importlib.import_module("yuxi.config.app")  # builds the app's Config
    except ValueError as exc:  # e.g. "No model provider available": the app refuses to start
        raise IntegrationError(f"the application refused to start: {exc}") from None
    log_config = importlib.import_module("yuxi.utils.logging_config")
    task_service = importlib.import_module("yuxi.services.task_service") if with_tasks else None
    oidc_service = importlib.import_module("yuxi.services.oidc_service") if with_tasks else None
    kb_modules = _knowledge_modules()
    missing = _missing(app_config.Config, REQUIRED_CONFIG_ATTRIBUTES) + logs.missing_attributes(log_config)
    if task_service is not None:
        missing += [f"Tasker.{n}" for n in _missing(task_service.tasker, REQUIRED_TASKER_ATTRIBUTES)]
    if oidc_service is not None:
        missing += oidc.missing_attributes(oidc_service.OIDCUtils)
    missing += _missing_knowledge(kb_modules)
    graph_modules = _graph_modules()
    missing += _missing_graph(graph_modules)
    subagent_service = importlib.import_module("yuxi.services.subagent_service")
    missing += subagents.missing_attributes(subagent_service)
    run_service = importlib.import_module("yuxi.services.agent_run_service") if with_tasks else None
    run_worker = None if with_tasks else importlib.import_module("yuxi.services.run_worker")
    if run_service is not None:
        missing += chat_runs.missing_attributes(run_service)
    if run_worker is not None:
        missing += chat_runs.missing_worker_attributes(run_worker)
    drain_s = chat_runs.drain_seconds(os.environ) if run_worker is not None else 0
    skill_service = importlib.import_module("yuxi.services.skill_service")
    missing += skills.missing_attributes(skill_service)
    sandbox_provider = importlib.import_module("yuxi.agents.backends.sandbox.provider")
    missing += sandboxes.missing_attributes(sandbox_provider)
    if missing:
        raise IntegrationError(f"Yuxi-Know {version} lacks what database mode patches: {', '.join(missing)}")
    logs.show_process_log(log_config, log_file)
    store = _open_store(settings)
    lease = None
    try:
        binding = SettingsBinding(store, app_config.config, replica=settings.instance_id)
        binding.install()
        binding.start()
        if task_service is not None:
            from yuxi_k8s.app.integration import tasks

            lease = ReplicaLease(store.engine)  # type: ignore[attr-defined]
            lease.start()
            tasks.install(task_service.Tasker, task_service.Task, lease)
        if oidc_service is not None:
            oidc.install(oidc_service.OIDCUtils, oidc.SharedTokens(redis_client(app_redis_url())))
        replica_id = lease.replica_id if lease is not None else f"{os.uname().nodename}-{os.getpid()}"
        subagents.install(subagent_service, store.engine)  # type: ignore[attr-defined]
        if run_service is not None:
            chat_runs.install(run_service)
        if run_worker is not None:
            chat_runs.install_worker_drain(run_worker, drain_s)
        skills.install(skill_service)
        sandboxes.install(sandbox_provider)
        kb_binding = _bind_knowledge(kb_modules, knowledge.Coherence(store.engine, replica_id))  # type: ignore[attr-defined]
        _bind_graph(graph_modules, store.engine)  # type: ignore[attr-defined]
    except Exception:
        store.close()
        raise
    ACTIVE = Runtime(settings, store, binding, lease, kb_binding)
    log.info("database mode on: Yuxi-Know %s settings bound to the kit's store", version)
    return ACTIVE


def readiness() -> tuple[bool, dict[str, Any]]:
    """Ready while the store's change feed is alive and, for the api, the replica's lease is renewed."""
    runtime = ACTIVE
    if runtime is None:
        if (os.environ.get("CONFIG_MODE") or "file").strip().lower() != "database":
            return True, {"config_mode": "file"}  # the app's own files: nothing shared to lose
        return False, {"config_mode": "database", "config_store": "not started"}
    store_ok = runtime.store.healthy
    lease_ok = runtime.lease is None or runtime.lease.alive
    detail = {
        "config_store": "ok" if store_ok else "change feed not alive: settings may be stale",
        "replica_lease": "ok" if lease_ok else "not renewed",
        "subscriber_lag_s": round(runtime.store.subscriber_lag_s, 3),
    }
    return store_ok and lease_ok, detail
