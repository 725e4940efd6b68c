"""What runs inside the application's image: database mode for Yuxi-Know without editing its files.

``yuxi-k8s-app`` (:mod:`.entry`) wraps the container's command. With
``CONFIG_MODE=database`` it binds the application's one ``Config`` object to the
kit's store (:mod:`.settings_binding`: load, save, push), gives the api replica a
lease and tasks an owner (:mod:`.tasks`), and serves the application behind a
readiness route (:mod:`.asgi`). Any other mode runs the command untouched.
Only the versions in :data:`SUPPORTED_VERSIONS` are patched; any other is
refused at start-up, before anything is changed.
"""

import os

from yuxi_k8s.state.errors import StateError

SUPPORTED_VERSIONS = ("0.6.1",)


def env_seconds(env: str, default: float) -> float:
    """A positive number of seconds from the environment variable *env* (one line if it is not)."""
    raw = os.environ.get(env) or str(default)
    try:
        value = float(raw)
    except ValueError:
        raise StateError(f"{env} must be a number of seconds, not {raw!r}") from None
    if value <= 0:
        raise StateError(f"{env} must be positive")
    return value
