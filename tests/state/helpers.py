"""Helpers of the db tier, imported by the tests and by conftest (never the other way round).

- polling instead of sleeping (:func:`wait_until`);
- the CLI as a user runs it (:func:`run_cli`), without the caller's database variables;
- databases of one test (:func:`create_database`), a private PostgreSQL cluster and a
  private Redis for the tests that restart, stop or own a whole server;
- snapshots that prove "nothing changed" (:func:`schema_snapshot`, :func:`kit_rows`);
- the shapes other parties leave in a database: the application's tables
  (:func:`create_app_tables`) and an older kit's tables in ``public`` (:func:`build_legacy_kit`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg

from tests.support import require
from yuxi_k8s.state.settings import libpq_url

ROOT = Path(__file__).resolve().parents[2]
HOW = "`make test-db` starts them (yuxi_k8s.devservices: apt-get install postgresql redis-server as root)"
# Variables through which the CLI would find a database or Redis by itself.
STATE_ENV = ("POSTGRES_URL", "REDIS_URL", "CONFIG_MODE", "SAVE_DIR", "DATABASE_URL", "DATABASE_URL_SYNC")

T = TypeVar("T")


def wait_until(probe: Callable[[], T], timeout: float, what: str, interval: float = 0.01) -> T:
    """Call *probe* until it returns something truthy; fail naming *what* after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = probe()
        except Exception as exc:  # the thing polled for may raise until it is ready
            last = exc
        if last and not isinstance(last, Exception):
            return last  # type: ignore[no-any-return]
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a CLI run: the caller's, less every state variable, plus *extra*."""
    base = {k: v for k, v in os.environ.items() if k not in STATE_ENV}
    return {**base, **extra}


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m yuxi_k8s ARGS`` as a user runs it; no database variable inherited unless in *env*."""
    return subprocess.run(
        [sys.executable, "-m", "yuxi_k8s", *args],
        env=cli_env(**(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
    )


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed CLI run (asserting there is exactly one, and no traceback)."""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    return lines[0]


def tree_files(root: Path) -> dict[str, bytes]:
    """Every file under *root* (links not followed) with its bytes: to prove "nothing written"."""
    out: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            out[str(path.relative_to(root))] = f"-> {os.readlink(path)}".encode()
        elif path.is_file():
            out[str(path.relative_to(root))] = path.read_bytes()
    return out


# --- databases -------------------------------------------------------------------


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


def connect(url: str, **kwargs: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(libpq_url(url), connect_timeout=5, **kwargs)


def create_database(base_url: str, template: str | None = None, prefix: str = "yuxi_t") -> str:
    """A new database beside *base_url*'s (cloned from *template*); returns its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with connect(base_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return with_database(base_url, name)


def drop_database(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")

    def dropped() -> bool:
        with connect(with_database(url, "postgres"), autocommit=True) as conn:
            try:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except psycopg.errors.InsufficientPrivilege:
                # A backend still starting up (or exiting) has no role yet, and a role without
                # pg_signal_backend may not terminate it (seen once in CI, after a test whose
                # store closed its pool): the next try finds it gone or fully connected.
                return False
        return True

    wait_until(dropped, 10, f"database {name} to be dropped", interval=0.1)


@contextlib.contextmanager
def database(base_url: str, template: str | None = None) -> Iterator[str]:
    url = create_database(base_url, template)
    try:
        yield url
    finally:
        drop_database(url)


def upgrade(url: str, revision: str = "head") -> list[str]:
    from yuxi_k8s import migrations
    from yuxi_k8s.state.db_backend import make_engine

    engine = make_engine(url)
    try:
        return migrations.upgrade(engine, revision)
    finally:
        engine.dispose()


def query(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with connect(url) as conn:
        return list(conn.execute(sql, params).fetchall())


def backends(url: str, state: str | None = None) -> int:
    """How many other sessions are connected to *url*'s database (in *state*, when given)."""
    sql = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    rows = query(url, sql + (" AND state = %s" if state else ""), (state,) if state else ())
    return int(rows[0][0])


def execute(url: str, *statements: str) -> None:
    with connect(url) as conn:
        for sql in statements:
            conn.execute(sql)


def schema_snapshot(url: str, schema: str = "public") -> dict[str, Any]:
    """Catalog and content of *schema*: tables, columns, defaults, constraints, indexes, sequences,
    triggers, owners, and every row. Equal before and after means "nothing touched"."""
    catalog = {
        "relations": """SELECT c.relname, c.relkind, pg_get_userbyid(c.relowner), c.relacl::text
                        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE n.nspname = %s ORDER BY 1""",
        "columns": """SELECT table_name, column_name, data_type, is_nullable, column_default, ordinal_position
                      FROM information_schema.columns WHERE table_schema = %s ORDER BY 1, 6""",
        "constraints": """SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
                          FROM pg_constraint WHERE connamespace = %s::regnamespace ORDER BY 1, 2""",
        "indexes": "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s ORDER BY 1",
        "triggers": """SELECT tgrelid::regclass::text, tgname FROM pg_trigger t
                       JOIN pg_class c ON c.oid = t.tgrelid
                       WHERE c.relnamespace = %s::regnamespace AND NOT tgisinternal ORDER BY 1, 2""",
        "sequences": """SELECT sequencename, last_value FROM pg_sequences
                        WHERE schemaname = %s ORDER BY 1""",
    }
    out: dict[str, Any] = {}
    with connect(url) as conn:
        for name, sql in catalog.items():
            out[name] = [tuple(map(str, row)) for row in conn.execute(sql, (schema,)).fetchall()]
        tables = [
            r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))
        ]
        for table in sorted(tables):
            rows = conn.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall()
            out[f"rows:{table}"] = sorted(map(repr, rows))
    return out


def kit_rows(url: str) -> dict[str, list[str]]:
    """Every row of the kit's settings tables, versions and revs included."""
    out: dict[str, list[str]] = {}
    with connect(url) as conn:
        for table in ("config_entries", "config_providers", "sync_points"):
            out[table] = sorted(map(repr, conn.execute(f"SELECT * FROM yuxi_k8s.{table}").fetchall()))
    return out


# --- what other parties leave in a database ---------------------------------------


def create_app_tables(url: str, names: list[str]) -> None:
    """Tables named like the application's, in public, each with rows (``tasks`` has its ``id``)."""
    with connect(url) as conn:
        for name in names:
            conn.execute(
                f'CREATE TABLE public."{name}" (id text PRIMARY KEY, payload jsonb, '
                "created_at timestamptz DEFAULT now())"
            )
            conn.execute(
                f'INSERT INTO public."{name}" (id, payload) VALUES (%s, %s), (%s, %s)',
                (f"{name}-1", '{"owner": "app"}', f"{name}-2", '{"n": 2}'),
            )


# The public tables of kit releases 0001-0003 (src/yuxi_k8s/migrations/versions/000[123]_*.py
# as of commit 6492d97), written out by hand: the revisions themselves are gone.
LEGACY_DDL = {
    "0001": [
        "CREATE SEQUENCE public.state_rev_seq AS bigint",
        """CREATE TABLE public.system_config (key text NOT NULL, value jsonb,
             version bigint NOT NULL DEFAULT 1, rev bigint NOT NULL DEFAULT nextval('state_rev_seq'),
             updated_at timestamptz NOT NULL DEFAULT now(), updated_by text,
             CONSTRAINT pk_system_config PRIMARY KEY (key))""",
        """CREATE TABLE public.model_providers (scope text NOT NULL, name text NOT NULL,
             payload jsonb NOT NULL, version bigint NOT NULL DEFAULT 1,
             rev bigint NOT NULL DEFAULT nextval('state_rev_seq'),
             updated_at timestamptz NOT NULL DEFAULT now(), updated_by text,
             CONSTRAINT pk_model_providers PRIMARY KEY (scope, name))""",
        """CREATE TABLE public.fencing_tokens (resource text NOT NULL, token bigint NOT NULL,
             updated_at timestamptz NOT NULL DEFAULT now(),
             CONSTRAINT pk_fencing_tokens PRIMARY KEY (resource))""",
    ],
    "0002": [
        """CREATE TABLE public.knowledge_bases (db_id text NOT NULL, kb_type text NOT NULL, name text,
             payload jsonb, global_payload jsonb, version bigint NOT NULL DEFAULT 1,
             rev bigint NOT NULL DEFAULT nextval('state_rev_seq'),
             created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now(),
             CONSTRAINT pk_knowledge_bases PRIMARY KEY (db_id))""",
        "CREATE INDEX ix_knowledge_bases_kb_type ON public.knowledge_bases (kb_type)",
        """CREATE TABLE public.kb_files (file_id text NOT NULL, database_id text, kb_type text NOT NULL,
             status text, filename text, payload jsonb NOT NULL, version bigint NOT NULL DEFAULT 1,
             rev bigint NOT NULL DEFAULT nextval('state_rev_seq'),
             created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now(),
             CONSTRAINT pk_kb_files PRIMARY KEY (file_id))""",
        "CREATE INDEX ix_kb_files_database_id_status ON public.kb_files (database_id, status)",
        """CREATE TABLE public.tasks (task_id text NOT NULL, position integer NOT NULL, status text,
             payload jsonb NOT NULL, version bigint NOT NULL DEFAULT 1,
             rev bigint NOT NULL DEFAULT nextval('state_rev_seq'),
             updated_at timestamptz NOT NULL DEFAULT now(), CONSTRAINT pk_tasks PRIMARY KEY (task_id))""",
        "CREATE INDEX ix_tasks_status ON public.tasks (status)",
        """CREATE TABLE public.documents (name text NOT NULL, payload jsonb,
             version bigint NOT NULL DEFAULT 1, rev bigint NOT NULL DEFAULT nextval('state_rev_seq'),
             updated_at timestamptz NOT NULL DEFAULT now(), CONSTRAINT pk_documents PRIMARY KEY (name))""",
    ],
    "0003": [
        """CREATE TABLE public.sync_state (digest text NOT NULL, rev bigint NOT NULL, direction text NOT NULL,
             synced_at timestamptz NOT NULL DEFAULT now(), CONSTRAINT pk_sync_state PRIMARY KEY (digest))""",
    ],
}

LEGACY_ROWS = {
    "0001": [
        """INSERT INTO public.system_config (key, value, updated_by) VALUES
             ('default_model', '"openai/gpt-4.1"', 'pod-a'), ('enable_reranker', 'true', NULL)""",
        """INSERT INTO public.model_providers (scope, name, payload) VALUES
             ('model_names', 'openai', '{"name": "OpenAI", "models": ["gpt-4.1"]}'),
             ('custom', 'my-llm', '{"name": "Mine", "custom": true}')""",
        "INSERT INTO public.fencing_tokens (resource, token) VALUES ('reindex', 1764547200000123)",
    ],
    "0002": [
        """INSERT INTO public.knowledge_bases (db_id, kb_type, name, payload, global_payload)
             VALUES ('kb_1', 'milvus', 'Old KB', '{"files": 1}', '{"name": "Old KB"}')""",
        """INSERT INTO public.kb_files (file_id, database_id, kb_type, status, filename, payload)
             VALUES ('file_1', 'kb_1', 'milvus', 'done', 'a.pdf', '{"size": 1}')""",
        """INSERT INTO public.tasks (task_id, position, status, payload)
             VALUES ('task_1', 0, 'running', '{"name": "parse"}')""",
        "INSERT INTO public.documents (name, payload) VALUES ('graph_info.json', '{\"nodes\": 3}')",
    ],
    "0003": ["INSERT INTO public.sync_state (digest, rev, direction) VALUES ('abc', 7, 'import')"],
}


def build_legacy_kit(url: str, revision: str = "0003") -> None:
    """The public tables an older kit release at *revision* left, with rows, and its alembic_version."""
    with connect(url) as conn:
        for rev in ("0001", "0002", "0003"):
            for sql in LEGACY_DDL[rev] + LEGACY_ROWS[rev]:
                conn.execute(sql)
            if rev == revision:
                break
        conn.execute(
            "CREATE TABLE public.alembic_version (version_num varchar(32) NOT NULL, "
            "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
        )
        conn.execute("INSERT INTO public.alembic_version VALUES (%s)", (revision,))


# --- private servers (for tests that stop, restart or own a whole server) -------------


def _pg_bindir() -> Path | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for directory in candidates:
        if (directory / "initdb").exists() and (directory / "pg_ctl").exists():
            return directory
    found = shutil.which("pg_ctl")
    return Path(found).resolve().parent if found else None


class PrivatePostgres:
    """A PostgreSQL cluster of its own (superuser ``postgres``, trust on loopback), in a temp folder.

    For what the shared server must not suffer: a restart, a role named like the kit's schema.
    As root the server runs as the ``postgres`` user (initdb refuses root).
    """

    def __init__(self) -> None:
        bindir = _pg_bindir()
        require(bindir is not None, f"PostgreSQL server binaries: {HOW}")
        assert bindir is not None
        self.bindir = bindir
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="yuxi-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self._as_root = os.geteuid() == 0

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120, cwd="/")

    def start(self) -> None:
        if not self.data.exists():
            if self._as_root:
                shutil.chown(self.dir, "postgres")
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
            with (self.data / "postgresql.conf").open("a") as conf:
                conf.write(
                    f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = ''\n"
                    "max_connections = 100\nfsync = off\n"
                )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def restart(self) -> None:
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-m", "fast", "-w", "-t", "60", "restart"
        )

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "60", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRedis:
    """A redis-server of its own, so flushing or killing it disturbs nobody else."""

    def __init__(self, workdir: Path) -> None:
        require(shutil.which("redis-server") is not None, f"redis-server: {HOW}")
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        wait_until(lambda: _pings(client), 10, "the private redis-server to answer")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def _pings(client: Any) -> bool:
    import redis

    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


class TcpProxy:
    """A loopback TCP relay that can be cut: the database "goes away" for one client only.

    ``cut()`` drops every relayed connection and refuses new ones until ``restore()``.
    """

    def __init__(self, upstream_port: int) -> None:
        import threading

        self.upstream_port = upstream_port
        self.port = free_port()
        self._open = threading.Event()
        self._open.set()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def url_for(self, url: str) -> str:
        parts = urlsplit(url)
        netloc = parts.netloc.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{self.port}")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))

    def _accept(self) -> None:
        import threading

        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if not self._open.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self._open.clear()
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def restore(self) -> None:
        self._open.set()

    def close(self) -> None:
        self.cut()
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
