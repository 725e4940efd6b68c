"""Time how long a setting written through one replica takes to be served by the others.

Runs inside a pod of the namespace, talking to each api pod by its IP (so every
request is pinned to one replica), through the application's own HTTP API:

    python -m yuxi_k8s.probes.propagation --pods '{"api-a": "10.0.0.5", ...}' \\
        --token TOKEN --key sandbox_exec_timeout_seconds --changes 100

For each change: ``POST /api/system/config {"key", "value"}`` on the next writer
(round robin), then ``GET /api/system/config`` on every other replica until it
serves the value. Prints one JSON line: per-change latencies and p50/p99/max.
Standard library only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any


def call(
    url: str,
    token: str,
    body: dict[str, Any] | None = None,
    timeout: float = 5.0,
    method: str | None = None,
) -> tuple[int, Any]:
    """One JSON call (GET, or POST with *body*, unless *method* says): status and parsed body."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    verb = method or ("GET" if body is None else "POST")
    request = urllib.request.Request(url, data=data, headers=headers, method=verb)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")[:300]


def address(where: str) -> str:
    """A pod IP (port 5050, the api's) or host:port."""
    return where if ":" in where else f"{where}:5050"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def seen_on_the_others(
    pods: dict[str, str], writer: str, sees: Callable[[str], bool], since: float, timeout: float
) -> dict[str, float]:
    """Ask every replica but *writer* (``sees(host:port)``) until each says yes or *timeout* passed
    since *since* (a ``time.monotonic()``): the seconds from *since* to each one's first yes."""
    seen: dict[str, float] = {}
    while len(seen) < len(pods) - 1 and time.monotonic() - since < timeout:
        for name in sorted(pods):
            if name != writer and name not in seen and sees(address(pods[name])):
                seen[name] = round(time.monotonic() - since, 4)
    return seen


def run(
    pods: dict[str, str], token: str, key: str, changes: int, start: int, timeout: float
) -> dict[str, Any]:
    names = sorted(pods)
    if len(names) < 2:
        raise SystemExit("propagation needs at least two replicas")
    rounds: list[dict[str, Any]] = []
    for i in range(changes):
        writer = names[i % len(names)]
        value = start + i
        t0 = time.monotonic()
        status, body = call(
            f"http://{address(pods[writer])}/api/system/config", token, {"key": key, "value": value}
        )
        if status != 200:
            raise SystemExit(f"write through {writer} failed: {status} {body}")

        def serves(where: str, value: int = value) -> bool:
            status, body = call(f"http://{where}/api/system/config", token, timeout=2)
            return status == 200 and body.get(key) == value

        seen = seen_on_the_others(pods, writer, serves, t0, timeout)
        rounds.append({"writer": writer, "value": value, "seen_after_s": seen})
    latencies = [t for r in rounds for t in r["seen_after_s"].values()]
    missed = sum(len(names) - 1 - len(r["seen_after_s"]) for r in rounds)
    return {
        "replicas": len(names),
        "changes": changes,
        "missed": missed,
        "p50_s": percentile(latencies, 0.5) if latencies else None,
        "p99_s": percentile(latencies, 0.99) if latencies else None,
        "max_s": max(latencies) if latencies else None,
        "rounds": rounds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", required=True, help="JSON object: pod name -> pod IP (or host:port)")
    parser.add_argument("--token", required=True, help="an admin's bearer token")
    parser.add_argument("--key", default="sandbox_exec_timeout_seconds", help="an integer setting of the app")
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--start", type=int, default=1000, help="first value written")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds a change may take to arrive")
    args = parser.parse_args(argv)
    result = run(json.loads(args.pods), args.token, args.key, args.changes, args.start, args.timeout)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
