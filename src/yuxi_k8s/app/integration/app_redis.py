"""The Redis the application itself uses: ``REDIS_URL``, else the app's own default."""

from __future__ import annotations

import os

# Yuxi-Know 0.6.1's default when REDIS_URL is unset (its run queue, worker and model cache).
APP_DEFAULT_REDIS_URL = "redis://redis:6379/0"


def app_redis_url() -> str:
    return (os.environ.get("REDIS_URL") or "").strip() or APP_DEFAULT_REDIS_URL
