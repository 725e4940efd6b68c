#!/usr/bin/env bash
# Loopback PostgreSQL and Redis for the db test tier and the benchmarks:
#
#   scripts/services.sh up|down|status|restart-postgres|stop-redis|start-redis
#
# A thin entry point: the logic (install with apt when missing, generated passwords under
# .run/services/, idempotent up, recovery from a killed earlier run, YUXI_PG_PORT /
# YUXI_REDIS_PORT) is src/yuxi_k8s/devservices.py. The test session starts the services by
# itself when a collected test needs them; this is for make services-up/down and by hand.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
[[ -x $here/.venv/bin/python ]] || "$here/scripts/venv.sh" >&2
exec "$here/.venv/bin/python" -m yuxi_k8s.devservices "$@"
