"""Time how long a knowledge base made through one replica takes to be readable on the others.

Runs inside a pod of the namespace, talking to each api pod by its IP (each request pinned to
one replica), through the application's own HTTP API:

    python -m yuxi_k8s.probes.kb_visibility --pods '{"api-a": "10.0.0.5", ...}' \\
        --token TOKEN --embed-model vllm/Qwen/Qwen3-Embedding-0.6B --count 50

For each knowledge base: ``POST /api/knowledge/databases`` (Milvus) on the next writer (round
robin), then ``GET /api/knowledge/databases/<id>`` on every other replica until it answers 200;
then it is deleted through the writer. Prints one JSON line: per-base latencies, p50/p99/max
and how many never showed up within the timeout. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from yuxi_k8s.probes.propagation import address, call, percentile, seen_on_the_others


def run(
    pods: dict[str, str], token: str, embed_model: str, count: int, prefix: str, timeout: float
) -> dict[str, Any]:
    names = sorted(pods)
    if len(names) < 2:
        raise SystemExit("kb_visibility needs at least two replicas")
    rounds: list[dict[str, Any]] = []
    for i in range(count):
        writer = names[i % len(names)]
        body = {
            "database_name": f"{prefix}-{i}",
            "description": "visibility probe",
            "kb_type": "milvus",
            "embed_model_name": embed_model,
        }
        bases = f"http://{address(pods[writer])}/api/knowledge/databases"
        t0 = time.monotonic()
        status, made = call(bases, token, body, timeout=30)
        if status != 200:
            raise SystemExit(f"create through {writer} failed: {status} {made}")
        answered = time.monotonic()
        made_s = answered - t0
        db_id = made["db_id"]

        def reads(where: str, db_id: str = db_id) -> bool:
            return call(f"http://{where}/api/knowledge/databases/{db_id}", token)[0] == 200

        # Timed from the create's answer, within *timeout* of its request.
        seen = seen_on_the_others(pods, writer, reads, answered, timeout - made_s)
        status, gone = call(f"{bases}/{db_id}", token, method="DELETE", timeout=30)
        if status != 200:
            raise SystemExit(f"delete of {db_id} through {writer} failed: {status} {gone}")
        rounds.append({"writer": writer, "db_id": db_id, "create_s": round(made_s, 4), "seen_after_s": seen})
    latencies = [t for r in rounds for t in r["seen_after_s"].values()]
    return {
        "replicas": len(names),
        "count": count,
        "missed": sum(len(names) - 1 - len(r["seen_after_s"]) for r in rounds),
        "p50_s": percentile(latencies, 0.5) if latencies else None,
        "p99_s": percentile(latencies, 0.99) if latencies else None,
        "max_s": max(latencies) if latencies else None,
        "create_p50_s": percentile([r["create_s"] for r in rounds], 0.5) if rounds else None,
        "rounds": rounds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", required=True, help="JSON object: pod name -> pod IP (or host:port)")
    parser.add_argument("--token", required=True, help="an admin's bearer token")
    parser.add_argument("--embed-model", required=True, help="an embedding model of the app's catalogue")
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--prefix", default="visibility", help="name prefix of the knowledge bases made")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds a base may take to show up")
    args = parser.parse_args(argv)
    result = run(json.loads(args.pods), args.token, args.embed_model, args.count, args.prefix, args.timeout)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
