"""A steady, bounded HTTP load for failover tests; standard library only, so it runs in any pod.

``python -m yuxi_k8s.probes.loadgen --url http://api:5050/api/system/config --rate 20 --duration 60
[--header "Authorization: Bearer ..."] [--served-by-header X-Yuxi-K8s-Replica]``
sends one request every 1/rate seconds (a fresh connection each time, as a
client behind a Service would see it), never more than rate*duration requests
and never past the deadline, then prints one JSON line with the counts. A line
``{"event": "started"}`` is printed when the first request succeeded, so a test
knows when to start disrupting.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
from collections import Counter
from urllib.parse import urlsplit

SERVED_BY = "X-Yuxi-K8s-Replica"
WARMUP_S = 30.0


def one_request(
    host: str, port: int, path: str, timeout: float, headers: dict[str, str], served_by: str = SERVED_BY
) -> tuple[bool, str, str]:
    """(ok, error kind or '', pod that answered or '')."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close", **headers})
        resp = conn.getresponse()
        resp.read()
        pod = resp.getheader(served_by) or ""
        if 200 <= resp.status < 300:
            return True, "", pod
        return False, f"http_{resp.status}", pod
    except (OSError, http.client.HTTPException) as exc:
        return False, type(exc).__name__, ""
    finally:
        conn.close()


def run(
    url: str,
    rate: float,
    duration: float,
    timeout: float,
    headers: dict[str, str] | None = None,
    served_by_header: str = SERVED_BY,
) -> dict[str, object]:
    parts = urlsplit(url)
    host, port = parts.hostname or "localhost", parts.port or 80
    path = parts.path or "/"
    interval = 1.0 / rate
    budget = int(rate * duration)
    errors: Counter[str] = Counter()
    served_by: Counter[str] = Counter()
    failures: list[float] = []
    ok = 0
    # Warm-up, not counted: a brand-new pod's first connections can be refused until the
    # cluster's NetworkPolicy agent has programmed its address. Counting starts with the first
    # success, which the "started" line announces (tests disrupt only after it).
    warmup_failures = 0
    warmup_deadline = time.monotonic() + WARMUP_S
    while True:
        success, kind, pod = one_request(host, port, path, timeout, headers or {}, served_by_header)
        if success:
            break
        warmup_failures += 1
        if time.monotonic() > warmup_deadline:
            raise SystemExit(f"loadgen: no request to {url} succeeded within {WARMUP_S:g} s (last: {kind})")
        time.sleep(0.2)
    t0 = time.monotonic()
    print(json.dumps({"event": "started", "warmup_failures": warmup_failures}), flush=True)
    deadline = t0 + duration
    next_at = t0
    sent = 0
    while sent < budget and time.monotonic() < deadline:
        now = time.monotonic()
        if now < next_at:
            time.sleep(next_at - now)
        next_at += interval
        sent += 1
        success, kind, pod = one_request(host, port, path, timeout, headers or {}, served_by_header)
        if pod:
            served_by[pod] += 1
        if success:
            ok += 1
        else:
            errors[kind] += 1
            failures.append(round(time.monotonic() - t0, 3))
            print(json.dumps({"event": "failure", "kind": kind, "t": failures[-1]}), flush=True)
    return {
        "event": "summary",
        "url": url,
        "sent": sent,
        "ok": ok,
        "failed": sent - ok,
        "errors": dict(errors),
        "first_failure_s": failures[0] if failures else None,
        "last_failure_s": failures[-1] if failures else None,
        "served_by": dict(served_by),
        "duration_s": round(time.monotonic() - t0, 3),
        "warmup_failures": warmup_failures,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second [20]")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds, hard bound [60]")
    parser.add_argument("--timeout", type=float, default=2.0, help="per-request timeout in seconds [2]")
    parser.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    parser.add_argument(
        "--served-by-header", default=SERVED_BY, help=f"response header naming the pod [{SERVED_BY}]"
    )
    args = parser.parse_args(argv)
    headers = dict(h.split(":", 1) for h in args.header)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    summary = run(args.url, args.rate, args.duration, args.timeout, headers, args.served_by_header)
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
