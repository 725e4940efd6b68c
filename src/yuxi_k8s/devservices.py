"""Loopback PostgreSQL and Redis for the db test tier and the benchmarks (development only).

    python -m yuxi_k8s.devservices up                 install (apt) if missing, start both, write the env file
    python -m yuxi_k8s.devservices down               stop both (data is kept under .run/services/)
    python -m yuxi_k8s.devservices status             say what runs
    python -m yuxi_k8s.devservices restart-postgres   fast restart of PostgreSQL (failure tests)
    python -m yuxi_k8s.devservices stop-redis|start-redis

``scripts/services.sh`` and ``make services-up/down`` call this; the test session starts the
services itself, only when a collected test needs them (``tests/services_fixtures.py``), and
the benchmarks through :meth:`DevServices.up`.

- PostgreSQL listens on 127.0.0.1:55432 (no Unix socket), Redis on 127.0.0.1:56379; other ports
  with ``YUXI_PG_PORT`` / ``YUXI_REDIS_PORT``. Both use generated passwords kept (mode 600) under
  ``.run/services/``; ``.run/services.env`` (mode 600) exports the test URLs.
- Idempotent: ``up`` on running services only rewrites the env file.
- Robust to a killed earlier run: a pid file whose process is gone (or is another program) is
  removed; a server left by an earlier checkout at the same path, with other credentials, is
  replaced (test data is disposable).
- Tied to their checkout: the services keep running between test sessions, and a server found on
  the port that was started by a checkout which no longer exists (a deleted temporary clone, as CI
  uses; its ``.run/services/`` gone) is stopped and its data removed, so the next clone anywhere
  gets the port. Which checkout started a server is read from its working directory (PostgreSQL
  runs in its data directory, Redis in ``.run/services/redis``) and, for data under
  ``/var/lib/yuxi-k8s-services/``, from the ``owner`` file beside it. A server of a checkout that
  still exists, or one the kit did not start, is left alone and the error names the port.
- As root, initdb refuses to run, so PostgreSQL runs as the ``postgres`` user, which must reach
  its data directory: when the clone lives where that user cannot go, the data goes under
  ``/var/lib/yuxi-k8s-services/<hash of the clone's path>/`` instead.
- Not root and something missing: one line naming the packages to install.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis
from psycopg import sql

from yuxi_k8s import apt, paths, procfs

DEFAULT_PG_PORT = 55432
DEFAULT_REDIS_PORT = 56379
HOST = "127.0.0.1"
TEST_ROLE = TEST_DB = "yuxi_test"
SHARED_PG_ROOT = Path("/var/lib/yuxi-k8s-services")
OWNER_FILE = "owner"  # in SHARED_PG_ROOT/<hash>/: the .run/services folder of the checkout it serves


class ServicesError(RuntimeError):
    """The services cannot be brought to the state asked for; the message is one line."""


@dataclass(frozen=True)
class Endpoints:
    """How the tests reach the services."""

    database_url: str  # SQLAlchemy (psycopg 3)
    database_dsn: str  # libpq
    redis_url: str

    def env(self) -> dict[str, str]:
        return {
            "YUXI_TEST_DATABASE_URL": self.database_url,
            "YUXI_TEST_DATABASE_DSN": self.database_dsn,
            "YUXI_TEST_REDIS_URL": self.redis_url,
        }


def say(message: str) -> None:
    print(f"services: {message}", file=sys.stderr, flush=True)


def _port(variable: str, default: int) -> int:
    value = os.environ.get(variable, "").strip()
    if not value:
        return default
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ServicesError(f"{variable}={value!r} is not a TCP port")
    return int(value)


def _wait(check: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _write_private(path: Path, text: str) -> None:
    """Write *text* to *path*, readable by its owner only (mode 600, also when it existed)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(text)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class DevServices:
    """The loopback PostgreSQL and Redis of one checkout."""

    def __init__(
        self, run_root: Path | None = None, *, pg_port: int | None = None, redis_port: int | None = None
    ):
        run_root = run_root or paths.run_root()  # the checkout's .run/
        self.run = run_root / "services"
        self.env_file = run_root / "services.env"
        self.pg_port = pg_port or _port("YUXI_PG_PORT", DEFAULT_PG_PORT)
        self.redis_port = redis_port or _port("YUXI_REDIS_PORT", DEFAULT_REDIS_PORT)
        self._pg_bin: Path | None = None

    # --- what callers use ---------------------------------------------------------------------
    def up(self) -> Endpoints:
        """Install what is missing, start both (or find them running), write the env file."""
        with self._locked():
            self._ensure_installed()
            self._pg_start()
            self._redis_start()
            endpoints = self.endpoints()
            self._write_env(endpoints)
        say(f"up: PostgreSQL {HOST}:{self.pg_port}, Redis {HOST}:{self.redis_port} ({self.env_file})")
        return endpoints

    def down(self) -> None:
        if self._find_pg_bin() is None:
            return  # never installed: nothing runs
        with self._locked():
            self._redis_stop()
            self._pg_stop()

    def status(self) -> dict[str, bool]:
        if self._find_pg_bin() is None:
            raise ServicesError("PostgreSQL is not installed")
        return {"postgres": self._pg_ready(), "redis": self._redis_answers()}

    def restart_postgres(self) -> None:
        self._ensure_installed()
        with self._locked():
            root = self._pg_root()
            say("restarting PostgreSQL (fast)")
            log_file, port = str(root / "server.log"), f"-p {self.pg_port}"
            self._pg_ctl(root, "-l", log_file, "-o", port, "-m", "fast", "-w", "-t", "60", "restart")

    def stop_redis(self) -> None:
        with self._locked():
            self._redis_stop()

    def start_redis(self) -> None:
        self._ensure_installed()
        with self._locked():
            self._redis_start()

    def endpoints(self) -> Endpoints:
        password, redis_password = self._secret("pg-test"), self._secret("redis")
        tail = f"{TEST_ROLE}:{password}@{HOST}:{self.pg_port}/{TEST_DB}"
        return Endpoints(
            database_url=f"postgresql+psycopg://{tail}",
            database_dsn=f"postgresql://{tail}",
            redis_url=f"redis://:{redis_password}@{HOST}:{self.redis_port}/0",
        )

    # --- shared pieces ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One `up`/`down` at a time per checkout (two test sessions may start together)."""
        self.run.mkdir(parents=True, exist_ok=True)
        with (self.run / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _secret(self, name: str) -> str:
        """The stored secret *name*, created once (mode 600)."""
        path = self.run / f"{name}.secret"
        with contextlib.suppress(OSError):
            if value := path.read_text().strip():
                return value
        self.run.mkdir(parents=True, exist_ok=True)
        _write_private(path, secrets.token_hex(18))
        return path.read_text().strip()

    def _ensure_installed(self) -> None:
        want = [] if self._find_pg_bin() else ["postgresql"]
        if shutil.which("redis-server") is None:
            want.append("redis-server")
        try:
            apt.install(want, recommends=False)
        except apt.AptError as exc:
            raise ServicesError(str(exc)) from None
        if self._find_pg_bin() is None:
            raise ServicesError("PostgreSQL binaries not found after installing")

    def _write_env(self, endpoints: Endpoints) -> None:
        lines = ["# Written by `python -m yuxi_k8s.devservices up`; source it before the db tests."]
        lines += [f"export {k}='{v}'" for k, v in endpoints.env().items()]
        lines.append(f"export YUXI_TEST_SERVICES_SCRIPT='{paths.REPO_ROOT / 'scripts' / 'services.sh'}'")
        tmp = self.env_file.with_suffix(".env.tmp")
        _write_private(tmp, "\n".join(lines) + "\n")
        os.replace(tmp, self.env_file)

    def _stop_left_behind(self, port: int, program: str, label: str, first: signal.Signals) -> None:
        """Stop a *program* server on *port* that a checkout left behind: one whose checkout is gone
        (a deleted clone anywhere), or an earlier checkout at this same path (other credentials).
        Servers of other living checkouts and servers the kit did not start are left alone."""
        for pid in sorted(procfs.listening_pids(port)):
            if not procfs.alive(pid, program):
                continue
            owner = _owner_of(pid)
            if owner is None:
                continue  # not started by the kit: the caller's error names the port
            gone = procfs.cwd_removed(pid) or not owner.is_dir()
            if not gone and owner != self.run:
                continue  # a living checkout's (YUXI_PG_PORT / YUXI_REDIS_PORT keep them apart)
            why = f"{owner.parent.parent}, which is gone" if gone else "an earlier checkout of this path"
            say(f"stopping the {label} (pid {pid}) left on port {port} by {why}")
            where = procfs.cwd(pid)
            procfs.terminate([pid], timeout=30, first=first)
            if gone and where and Path(where).is_relative_to(SHARED_PG_ROOT):
                shutil.rmtree(SHARED_PG_ROOT / Path(where).relative_to(SHARED_PG_ROOT).parts[0], True)

    # --- PostgreSQL ---------------------------------------------------------------------------
    def _find_pg_bin(self) -> Path | None:
        if self._pg_bin is None:
            candidates = sorted(
                Path("/usr/lib/postgresql").glob("*/bin"),
                key=lambda p: [int(n) for n in re.findall(r"\d+", p.parent.name)],
                reverse=True,
            )
            for folder in candidates:
                if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
                    self._pg_bin = folder
                    break
            else:
                found = shutil.which("pg_ctl")
                self._pg_bin = Path(found).resolve().parent if found else None
        return self._pg_bin

    def _pg(self, tool: str) -> str:
        folder = self._find_pg_bin()
        if folder is None:
            raise ServicesError("PostgreSQL is not installed")
        return str(folder / tool)

    @staticmethod
    def _root_user() -> bool:
        return os.geteuid() == 0

    def _as_pg(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        """Run *argv* as the user PostgreSQL runs as (``postgres`` when we are root), from ``/``."""
        if self._root_user():
            argv = ["runuser", "-u", "postgres", "--", *argv]
        return subprocess.run(argv, cwd="/", capture_output=True, text=True, check=False)

    def _pg_root(self) -> Path:
        if not self._root_user():
            return self.run / "pg"
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise ServicesError("no 'postgres' user; reinstall the postgresql package") from None
        self.run.mkdir(parents=True, exist_ok=True)
        for folder in (self.run.parent, self.run):
            with contextlib.suppress(OSError):
                folder.chmod(folder.stat().st_mode | 0o001)
        if self._as_pg(["test", "-x", str(self.run)]).returncode == 0:
            return self.run / "pg"
        clone = str(self.run.parent.parent)  # one folder per clone: the checkout holding .run/
        folder = SHARED_PG_ROOT / hashlib.sha1(clone.encode()).hexdigest()[:12]
        folder.mkdir(parents=True, exist_ok=True)
        owner = folder / OWNER_FILE  # which checkout this data belongs to (see _owner_of)
        if not owner.exists() or owner.read_text().strip() != str(self.run):
            owner.write_text(f"{self.run}\n")
        return folder / "pg"

    def _pg_ready(self) -> bool:
        if self._find_pg_bin() is None:
            return False
        cmd = [self._pg("pg_isready"), "-q", "-h", HOST, "-p", str(self.pg_port), "-t", "1"]
        return subprocess.run(cmd, capture_output=True, check=False).returncode == 0

    def _admin(self) -> psycopg.Connection:
        """A superuser connection (autocommit) to this clone's server."""
        return psycopg.connect(
            host=HOST,
            port=self.pg_port,
            user="postgres",
            password=self._secret("pg-superuser"),
            dbname="postgres",
            connect_timeout=5,
            autocommit=True,
        )

    def _admin_answers(self) -> bool:
        """Our superuser password works: the server on the port is ours."""
        try:
            with self._admin() as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def _postmaster_pid(self, root: Path) -> str:
        try:
            return (root / "data" / "postmaster.pid").read_text().splitlines()[0].strip()
        except (OSError, IndexError):
            return ""

    def _clear_stale_postmaster_pid(self, root: Path) -> None:
        pidfile = root / "data" / "postmaster.pid"
        if not pidfile.exists():
            return
        pid = self._postmaster_pid(root)
        if procfs.alive(pid, "postgres|postmaster"):
            return  # a live server of ours
        say(f"removing stale {pidfile} (pid {pid or '?'} is gone)")
        pidfile.unlink(missing_ok=True)

    def _pg_init(self, root: Path) -> None:
        data = root / "data"
        if (data / "PG_VERSION").exists():
            return
        say(f"initialising PostgreSQL data in {data}")
        shutil.rmtree(data, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
        pwfile = root / "superuser.pw"
        _write_private(pwfile, self._secret("pg-superuser"))
        if self._root_user():
            user = pwd.getpwnam("postgres")
            for path in (root, *root.rglob("*")):
                os.chown(path, user.pw_uid, user.pw_gid)
        initdb = self._as_pg(
            [
                self._pg("initdb"), "-D", str(data), "-U", "postgres", f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256", "--auth-local=peer", "-E", "UTF8", "--locale=C.UTF-8",
            ]
        )  # fmt: skip
        (root / "initdb.log").write_text(initdb.stdout + initdb.stderr)
        pwfile.unlink(missing_ok=True)
        if initdb.returncode != 0:
            print(initdb.stdout + initdb.stderr, file=sys.stderr)
            raise ServicesError(f"initdb failed (log: {root / 'initdb.log'})")
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# yuxi-k8s test services: loopback only, no Unix socket, room for the\n"
                "# multi-process tests (each process holds a pool and a listener connection).\n"
                f"listen_addresses = '{HOST}'\nport = {self.pg_port}\nunix_socket_directories = ''\n"
                "max_connections = 300\npassword_encryption = 'scram-sha-256'\n"
            )

    def _pg_ctl(self, root: Path, *args: str) -> None:
        proc = self._as_pg([self._pg("pg_ctl"), "-D", str(root / "data"), *args])
        if proc.returncode != 0:
            tail = _tail(root / "server.log")
            if tail:
                print(tail, file=sys.stderr)
            raise ServicesError(f"pg_ctl {args[-1]} failed (log: {root / 'server.log'})")

    def _pg_start(self) -> None:
        root = self._pg_root()
        self._pg_init(root)
        self._clear_stale_postmaster_pid(root)
        # The port on the command line, not only in postgresql.conf: a data directory made on another
        # port (YUXI_PG_PORT changed since) still starts where this run looks for it.
        start = ("-l", str(root / "server.log"), "-o", f"-p {self.pg_port}", "-w", "-t", "60", "start")
        if self._pg_ready() and not self._admin_answers():
            # SIGINT: PostgreSQL's fast shutdown (SIGTERM would wait for its clients)
            self._stop_left_behind(self.pg_port, "postgres|postmaster", "PostgreSQL", signal.SIGINT)
        if not self._pg_ready():
            say(f"starting PostgreSQL on {HOST}:{self.pg_port}")
            self._pg_ctl(root, *start)
        if not self._admin_answers():
            if not procfs.alive(self._postmaster_pid(root), "postgres|postmaster"):
                raise ServicesError(
                    f"something else answers on {HOST}:{self.pg_port} (not this clone's PostgreSQL); "
                    "stop it or set YUXI_PG_PORT"
                )
            # Our data directory, but made by an earlier checkout at the same path with other secrets
            # (the /var/lib fallback outlives a clone). Test data is disposable: start afresh.
            say(f"PostgreSQL data in {root} was made with other credentials; re-initialising it")
            with contextlib.suppress(ServicesError):
                self._pg_ctl(root, "-m", "immediate", "-w", "-t", "60", "stop")
            shutil.rmtree(root / "data", ignore_errors=True)
            self._pg_init(root)
            self._pg_ctl(root, *start)
            if not self._admin_answers():
                raise ServicesError(f"PostgreSQL on {HOST}:{self.pg_port} refuses this clone's credentials")
        self._ensure_test_database()

    def _ensure_test_database(self) -> None:
        password = self._secret("pg-test")
        with self._admin() as conn:
            role = sql.Identifier(TEST_ROLE)
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [TEST_ROLE]).fetchone() is None:
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEDB").format(role))
            conn.execute(
                sql.SQL("ALTER ROLE {} LOGIN CREATEDB PASSWORD {}").format(role, sql.Literal(password))
            )
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [TEST_DB]).fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(TEST_DB), role))

    def _pg_stop(self) -> None:
        root = self._pg_root()
        if not (root / "data" / "PG_VERSION").exists():
            return
        self._clear_stale_postmaster_pid(root)
        if (root / "data" / "postmaster.pid").exists():
            say("stopping PostgreSQL")
            self._pg_ctl(root, "-m", "fast", "-w", "-t", "60", "stop")

    # --- Redis --------------------------------------------------------------------------------
    @property
    def _redis_dir(self) -> Path:
        return self.run / "redis"

    @property
    def _redis_pidfile(self) -> Path:
        return self._redis_dir / "redis.pid"

    def _redis_client(self) -> redis.Redis:
        return redis.Redis(
            host=HOST,
            port=self.redis_port,
            password=self._secret("redis"),
            socket_connect_timeout=1,
            socket_timeout=2,
        )

    def _redis_answers(self) -> bool:
        """Our password works: the server on the port is ours."""
        try:
            return bool(self._redis_client().ping())
        except redis.RedisError:
            return False

    def _redis_pid(self, *, quiet: bool = False) -> int | None:
        """The recorded pid while it runs redis-server; a stale pid file is removed."""
        try:
            text = self._redis_pidfile.read_text().strip()
        except OSError:
            return None
        if procfs.alive(text, "redis-server"):
            return int(text)
        if not quiet:
            say(f"removing stale {self._redis_pidfile}")
        self._redis_pidfile.unlink(missing_ok=True)
        return None

    def _redis_start(self) -> None:
        self._redis_dir.mkdir(parents=True, exist_ok=True)
        if self._redis_answers():
            if self._redis_pid() is None:
                info = self._redis_client().info("server")
                self._redis_pidfile.write_text(f"{info['process_id']}\n")
            return
        pid = self._redis_pid()
        if pid is not None:
            say(f"Redis pid {pid} does not answer; killing it")
            procfs.terminate([pid], first=signal.SIGKILL)
        self._stop_left_behind(self.redis_port, "redis-server", "Redis", signal.SIGTERM)
        self._redis_pidfile.unlink(missing_ok=True)
        say(f"starting Redis on {HOST}:{self.redis_port}")
        conf = self._redis_dir / "redis.conf"  # the password stays out of the process list
        _write_private(
            conf,
            f"bind {HOST}\nport {self.redis_port}\ndaemonize yes\n"
            f'pidfile "{self._redis_pidfile}"\ndir "{self._redis_dir}"\n'
            f'logfile "{self._redis_dir / "redis.log"}"\nrequirepass "{self._secret("redis")}"\n'
            'appendonly yes\nsave ""\n',
        )
        subprocess.run(["redis-server", str(conf)], capture_output=True, check=False)
        if not _wait(self._redis_answers, timeout=5):
            print(_tail(self._redis_dir / "redis.log"), file=sys.stderr)
            raise ServicesError(
                f"Redis did not answer on {HOST}:{self.redis_port} (something else on the port?)"
            )

    def _redis_stop(self) -> None:
        if self._redis_answers():
            say("stopping Redis")
            with contextlib.suppress(redis.RedisError):
                self._redis_client().shutdown(nosave=True)
        elif (pid := self._redis_pid()) is not None:
            say(f"stopping Redis (pid {pid}, not answering)")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        else:
            return
        if not _wait(lambda: not self._redis_answers() and self._redis_pid(quiet=True) is None, timeout=5):
            raise ServicesError("Redis did not stop")
        self._redis_pidfile.unlink(missing_ok=True)


def _owner_of(pid: int) -> Path | None:
    """The ``.run/services`` folder of the checkout that started the server *pid*, read from its
    working directory: ``<checkout>/.run/services/...`` itself, or ``SHARED_PG_ROOT/<hash>/...``
    whose ``owner`` file names it. None for a process the kit did not start."""
    where = procfs.cwd(pid)
    if where is None:
        return None
    path = Path(where)
    if path.is_relative_to(SHARED_PG_ROOT) and path != SHARED_PG_ROOT:
        try:
            named = (SHARED_PG_ROOT / path.relative_to(SHARED_PG_ROOT).parts[0] / OWNER_FILE).read_text()
        except OSError:
            return None
        return Path(named.strip()) if named.strip() else None
    for folder in (path, *path.parents):
        if folder.name == "services" and folder.parent.name == ".run":
            return folder
    return None


USAGE = "usage: python -m yuxi_k8s.devservices up|down|status|restart-postgres|stop-redis|start-redis"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv) or ["up"]
    if len(args) != 1:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        services = DevServices()
        match args[0]:
            case "up":
                services.up()
            case "down":
                services.down()
            case "status":
                for name, up in services.status().items():
                    port = services.pg_port if name == "postgres" else services.redis_port
                    print(f"{name}: up ({HOST}:{port})" if up else f"{name}: down")
            case "restart-postgres":
                services.restart_postgres()
            case "stop-redis":
                services.stop_redis()
            case "start-redis":
                services.start_redis()
            case _:
                print(USAGE, file=sys.stderr)
                return 2
    except ServicesError as exc:
        print(f"services: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("services: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
