"""``yuxi-k8s-app``: the container command of the api and the worker, wrapping the application's own.

    yuxi-k8s-app uvicorn server.main:app --host 0.0.0.0 --port 5050
    yuxi-k8s-app arq server.worker_main.WorkerSettings

With ``CONFIG_MODE=database`` the application's settings are bound to the kit's
store (and, for the api, tasks get owners) before the command runs in this
process; uvicorn serves the app behind ``GET /api/system/ready``. With
``CONFIG_MODE=file`` (or unset) nothing is patched: once the settings files hold
every change of the kit's store (a switch back from database mode exports it
first), uvicorn serves the app behind the same readiness route (always ready:
file mode has no store to lose) and any other command is executed unchanged. Either way an unsupported
application version stops here with one line (exit 78).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from yuxi_k8s.state import Settings, StateError

EX_CONFIG = 78  # sysexits: configuration error
ASGI_TARGET = "yuxi_k8s.app.integration.asgi:app"
APP_TARGET = "server.main:app"


def _fail(message: str) -> int:
    print(f"yuxi-k8s-app: {message}", file=sys.stderr, flush=True)
    return EX_CONFIG


def _uvicorn(args: list[str]) -> int:
    import uvicorn.main

    if APP_TARGET not in args:
        return _fail(f"expected `uvicorn {APP_TARGET} ...`, got `uvicorn {' '.join(args)}`")
    args = [ASGI_TARGET if a == APP_TARGET else a for a in args]
    try:
        uvicorn.main.main(args=args, prog_name="uvicorn", standalone_mode=False)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _arq(args: list[str]) -> int:
    from arq.cli import cli

    try:
        cli.main(args=args, prog_name="arq", standalone_mode=False)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if args else 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from yuxi_k8s.app.integration import runtime

    program, rest = args[0], args[1:]
    # The app imports `server.*` from its working directory, as uvicorn and arq let it.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    database = (os.environ.get("CONFIG_MODE") or "file").strip().lower() == "database"
    try:
        runtime.check_version()
        if database:
            if program not in ("uvicorn", "arq"):
                return _fail(f"database mode runs `uvicorn {APP_TARGET}` or `arq ...`, not `{program}`")
            active = runtime.start(with_tasks=program == "uvicorn")
        else:
            runtime.wait_for_exported_settings(Settings.from_env())
    except (runtime.IntegrationError, StateError, ValueError) as exc:
        return _fail(str(exc))
    if not database:
        if program == "uvicorn":
            return _uvicorn(rest)
        os.execvp(program, args)  # file mode, not the api: the command exactly as given
    try:
        return _uvicorn(rest) if program == "uvicorn" else _arq(rest)
    finally:
        active.close()


if __name__ == "__main__":
    raise SystemExit(main())
