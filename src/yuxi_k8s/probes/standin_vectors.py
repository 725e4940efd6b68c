"""Deterministic text vectors for the model stand-in: embeddings and rerank scores without a model.

A text becomes a hashed bag of words: every token (a lower-cased word, or one CJK
character) adds 1 at a position chosen by its hash, and the vector is scaled to
length 1. Two texts that share words therefore have a positive cosine, texts with
no word in common are near 0, and the same text always gives the same vector, in
every replica and every run. Standard library only (the probes run in small images).
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import struct
from collections.abc import Mapping

# The dimension each embedding model name declares, as the stand-in is asked for it (the
# ``model`` of the request). Yuxi-Know v0.6.1's catalogue (yuxi/config/static/models.py,
# DEFAULT_EMBED_MODELS) sends the entry's ``name``; a knowledge base stores that entry's
# ``dimension`` in its embed_info and LightRAG checks every answer against it, without
# sending ``dimensions``. OpenAI's own names are here for clients that ask for them.
DIMENSIONS: dict[str, int] = {
    "BAAI/bge-m3": 1024,  # siliconflow/BAAI/bge-m3
    "Pro/BAAI/bge-m3": 1024,  # siliconflow/Pro/BAAI/bge-m3 (the app's default embed_model)
    "Qwen/Qwen3-Embedding-0.6B": 1024,  # siliconflow/Qwen/Qwen3-Embedding-0.6B
    "Qwen3-Embedding-0.6B": 1024,  # vllm/Qwen/Qwen3-Embedding-0.6B (http://localhost:8000/v1/embeddings)
    "nomic-embed-text": 768,  # ollama/nomic-embed-text (http://localhost:11434/api/embed)
    "bge-m3": 1024,  # ollama/bge-m3
    "text-embedding-v4": 1024,  # dashscope/text-embedding-v4
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
DEFAULT_DIMENSION = 1024  # most of the app's catalogue
MAX_DIMENSION = 8192

_TOKEN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]|[^\W_]+", re.UNICODE)


class DimensionError(ValueError):
    """A requested dimension the stand-in does not serve."""


def tokens(text: str) -> list[str]:
    """Lower-cased words; each CJK character is a token of its own (Chinese has no spaces)."""
    return [t.lower() for t in _TOKEN.findall(text)]


def dimension_for(model: str, requested: int | None = None, table: Mapping[str, int] = DIMENSIONS) -> int:
    """The vector length for *model*: the request's ``dimensions`` if given, else the table's, else 1024."""
    dim = requested if requested is not None else table.get(model, DEFAULT_DIMENSION)
    if not isinstance(dim, int) or isinstance(dim, bool) or not 1 <= dim <= MAX_DIMENSION:
        raise DimensionError(f"dimensions must be an integer from 1 to {MAX_DIMENSION}, not {dim!r}")
    return dim


def _slot(token: str, dim: int) -> int:
    digest = hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % dim


def embed(text: str, dim: int) -> list[float]:
    """*text* as a unit vector of length *dim* (a text without words gets a fixed unit vector)."""
    vector = [0.0] * dim
    for token in tokens(text) or [""]:
        vector[_slot(token, dim)] += 1.0
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector]


def cosine(a: list[float], b: list[float]) -> float:
    """Cosine of two unit vectors of one length."""
    return sum(x * y for x, y in zip(a, b, strict=True))


def as_base64(vector: list[float]) -> str:
    """The vector as OpenAI's ``encoding_format: base64`` sends it: little-endian float32 bytes."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def relevance(query: str, documents: list[str]) -> list[float]:
    """A rerank score per document: the cosine of its vector with the query's (0..1)."""
    dim = DEFAULT_DIMENSION
    q = embed(query, dim)
    return [max(0.0, cosine(q, embed(doc, dim))) for doc in documents]


def parse_dimension_overrides(items: list[str]) -> dict[str, int]:
    """``NAME=DIM`` items (the command line's ``--dimension``) as table entries."""
    table: dict[str, int] = {}
    for item in items:
        name, sep, value = item.rpartition("=")
        if not sep or not name or not value.isdigit():
            raise DimensionError(f"--dimension takes MODEL=DIM, not {item!r}")
        table[name] = dimension_for(name, int(value))
    return table
