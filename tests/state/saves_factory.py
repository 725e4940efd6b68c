"""A saves/ tree in Yuxi-Know v0.6.1's own format, generated (until a fixture written by the real app lands).

What v0.6.1 keeps in files (``contracts/0.6.1.yaml``, ``state``):

- ``config/base.toml``: ``Config.save()`` dumps the settings that differ from the
  defaults with ``tomli_w`` (top-level keys), and ``_save_models_to_file`` adds
  ``[model_names.<provider>]`` tables of built-in providers someone edited, each a
  full ``ChatModelProvider.model_dump()`` (name, url, base_url, default, env, models, custom);
- ``config/custom_providers.toml``: ``[model_names.<provider>]`` of the providers users
  added (``custom = true``).

Deterministic; *providers* scales the number of provider tables (the benchmark uses it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomli_w

from yuxi_k8s.state.app_settings import provider_key_variables

KEY_VARIABLES = provider_key_variables()
BASE = "config/base.toml"
CUSTOM = "config/custom_providers.toml"

# Settings a user changed from the defaults (field names and types of v0.6.1's Config).
SETTINGS: dict[str, Any] = {
    "default_model": "siliconflow/deepseek-ai/DeepSeek-V3.2",
    "fast_model": "openai/gpt-4o-mini",
    "embed_model": "siliconflow/Pro/BAAI/bge-m3",
    "reranker": "siliconflow/Pro/BAAI/bge-reranker-v2-m3",
    "enable_reranker": True,
    "enable_web_search": True,
    "enable_content_guard": False,
    "default_agent_id": "ChatbotAgent",
    "sandbox_exec_timeout_seconds": 300,
    "sandbox_max_output_bytes": 524288,
    "sandbox_virtual_path_prefix": "/home/gem/user-data",
}


def provider(name: str, index: int = 0, *, custom: bool = False) -> dict[str, Any]:
    """One ``ChatModelProvider.model_dump()``."""
    return {
        "name": f"{name} 模型 {index}" if index % 3 == 0 else f"{name} provider {index}",
        "url": f"https://{name}.example.com/models",
        "base_url": f"https://api.{name}.example.com/v1",
        "default": f"{name}-chat-{index}",
        # A variable the kit lets a provider name (the contract's provider keys, or NO_API_KEY).
        "env": KEY_VARIABLES[index % len(KEY_VARIABLES)],
        "models": [f"{name}-chat-{index}", f"{name}-reasoner-{index}", f"{name}/Pro/model-{index}"],
        "custom": custom,
    }


def model_names(count: int = 3) -> dict[str, dict[str, Any]]:
    builtin = ["siliconflow", "openai", "deepseek", "dashscope", "zhipu", "ark"]
    names = [builtin[i] if i < len(builtin) else f"builtin-{i}" for i in range(count)]
    return {name: provider(name, i) for i, name in enumerate(names)}


def custom_providers(count: int = 2) -> dict[str, dict[str, Any]]:
    return {f"my-llm-{i}": provider(f"my-llm-{i}", i, custom=True) for i in range(count)}


def write_toml(path: Path, doc: dict[str, Any]) -> Path:
    """Write *doc* as the application does (``tomli_w.dump``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        tomli_w.dump(doc, handle)
    return path


def build_saves(
    root: Path,
    *,
    settings: dict[str, Any] | None = None,
    providers: int = 3,
    custom: int = 2,
) -> Path:
    """A saves/ folder with base.toml (settings + *providers* tables) and custom_providers.toml."""
    base: dict[str, Any] = dict(SETTINGS if settings is None else settings)
    if providers:
        base["model_names"] = model_names(providers)
    write_toml(root / BASE, base)
    if custom:
        write_toml(root / CUSTOM, {"model_names": custom_providers(custom)})
    # Files the app keeps beside them, which the kit never reads.
    (root / "logs").mkdir(parents=True, exist_ok=True)
    (root / "logs" / "yuxi.log").write_text("started\n", encoding="utf-8")
    return root
