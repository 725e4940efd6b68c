"""A user's first knowledge base, in a real browser, over two replicas of the real application.

Headless Chromium (tests/browser) opens the web image's SPA through the kit's nginx
(tests/app/kit_nginx.py: its own config, round robin over both replicas, as the api Service
spreads connections), with the application in full mode: Milvus, MinIO and the model stand-in
on loopback (tests/app/full_mode.py), and the app's worker, which answers the chat page's runs.
The settings an operator would import with ``migrate-config`` (the stand-in as the chat, title
and embedding models) are in the kit's store before the processes start. The journey
(tests/browser/knowledge_journey.py) ends with replica A stopped. A screenshot of each step and
the report (journey.txt) are kept in ``.run/browser-journey/``; the browser console must stay
free of errors and no page may reach outside this machine.
"""

from __future__ import annotations

from pathlib import Path

from tests.app.full_mode import EMBED_MODEL, STANDIN_PORT, full_mode_env
from tests.app.kit_nginx import KitNginx
from tests.app.servers import Servers
from tests.browser.harness import journey
from tests.browser.knowledge_journey import CHAT_MODEL, first_knowledge_base
from tests.services_fixtures import LoopbackServices
from tests.support import require
from yuxi_k8s import paths
from yuxi_k8s.app import images, source
from yuxi_k8s.app.localdeps import MinioEndpoint
from yuxi_k8s.app.localrun import AppRunner
from yuxi_k8s.state import Settings, open_config

ADMIN = ("journey_admin", "Journey-pass-1")
STANDIN_PROVIDER = {
    "name": "Stand-in",
    "url": f"http://127.0.0.1:{STANDIN_PORT}",
    "base_url": f"http://127.0.0.1:{STANDIN_PORT}/v1",
    "default": "standin-chat",
    "env": "NO_API_KEY",
    "models": ["standin-chat"],
    "custom": True,
}
RUN_FOLDER = paths.run_root() / "browser-journey"


def _seed_settings(db_url: str) -> None:
    """What an operator imports before the first start: the stand-in as every model the UI uses."""
    with open_config(Settings(mode="database", database_url=db_url)) as store:
        store.put_provider("standin", STANDIN_PROVIDER, scope="custom")
        store.set_many({"default_model": CHAT_MODEL, "fast_model": CHAT_MODEL, "embed_model": EMBED_MODEL})


def test_a_user_builds_a_knowledge_base_in_the_browser_and_the_other_replica_serves_all_of_it(
    app_runner: AppRunner,
    kit_db: str,
    minio: MinioEndpoint,
    milvus_uri: str,
    model_standin: str,
    loopback_services: LoopbackServices,
    tmp_path: Path,
) -> None:
    web_tree = images.image_tree(source.resolve(), "web")
    require((web_tree / "usr/sbin/nginx").exists(), f"nginx in the web image tree {web_tree}")
    _seed_settings(kit_db)
    processes = Servers(
        app_runner, kit_db, loopback_services.redis_url, tmp_path, **full_mode_env(milvus_uri, minio)
    )
    try:
        a, b = processes.start("a"), processes.start("b")
        processes.start_worker("worker")  # the chat page sends runs (VITE_USE_RUNS_API): the worker answers
        nginx = KitNginx(web_tree, tmp_path / "nginx", [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"])
        try:
            nginx.wait_ready()
            with journey(RUN_FOLDER) as seen:
                first_knowledge_base(seen, nginx.url, ADMIN, tmp_path, lose_one_replica=a.terminate)
        finally:
            nginx.stop()
    finally:
        processes.stop()
