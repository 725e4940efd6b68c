"""Pure parts of the per-process-state integration: credential masking, client address, nginx header,
the run events' cursor, the worker's command."""

from __future__ import annotations

import logging

import pytest

from yuxi_k8s import paths
from yuxi_k8s.app.integration import chat_runs, logs
from yuxi_k8s.app.integration.login_limit import client_address

ENV = {
    "POSTGRES_URL": "postgresql+asyncpg://yuxi:pg%2Fs3cret@postgres:5432/yuxi",
    "REDIS_URL": "redis://:redis-s3cret@redis:6379/0",
    "NEO4J_PASSWORD": "neo-s3cret",
    "OPENAI_API_BASE": "http://model:8000/v1",
}


@pytest.mark.parametrize(
    ("line", "masked"),
    [
        # What Yuxi-Know 0.6.1 logs at start: the URL cut at "@", password kept (manager.py).
        (
            "PostgreSQL manager initialized: postgresql+asyncpg://yuxi:pg/s3cret://***",
            "PostgreSQL manager initialized: postgresql+asyncpg://yuxi:***://***",
        ),
        ("connect redis://:redis-s3cret@redis:6379/0", "connect redis://:***@redis:6379/0"),
        ("any url https://bob:hunter22@example.test/x", "any url https://bob:***@example.test/x"),
        ("neo4j auth failed for neo-s3cret", "neo4j auth failed for ***"),
        ("at http://model:8000/v1 127.0.0.1:5050", "at http://model:8000/v1 127.0.0.1:5050"),
    ],
)
def test_credentials_are_masked_and_nothing_else(line: str, masked: str) -> None:
    mask = logs.CredentialMask(logs.secrets_from_env(ENV))
    assert mask(line) == masked
    assert mask(masked) == masked


def test_standard_library_records_are_masked_from_the_factory_on(caplog: pytest.LogCaptureFixture) -> None:
    previous = logging.getLogRecordFactory()
    try:
        logs.mask_credentials(ENV)
        logs.mask_credentials(ENV)  # idempotent: one masking factory
        with caplog.at_level(logging.INFO):
            logging.getLogger("yuxi.test").info("db %s", ENV["POSTGRES_URL"])
            try:
                raise RuntimeError("cannot reach redis://:redis-s3cret@redis:6379/0")
            except RuntimeError:
                logging.getLogger("yuxi.test").exception("failed")
        text = caplog.text
        assert "pg%2Fs3cret" not in text and "redis-s3cret" not in text, text
        assert "postgresql+asyncpg://yuxi:***@postgres" in text
    finally:
        logging.setLogRecordFactory(previous)


@pytest.mark.parametrize(
    ("header", "peer", "expected"),
    [
        ("203.0.113.9", "10.0.0.5", "203.0.113.9"),  # the kit's nginx: one entry, the address it saw
        ("6.6.6.6, 203.0.113.9", "10.0.0.5", "203.0.113.9"),  # a forged first entry is ignored
        (None, "10.0.0.5", "10.0.0.5"),
        (None, None, "unknown"),
    ],
)
def test_the_login_limit_keys_on_the_address_the_nearest_proxy_wrote(
    header: str | None, peer: str | None, expected: str
) -> None:
    headers = {} if header is None else {"x-forwarded-for": header}
    assert client_address(headers, peer) == expected


def test_the_web_nginx_replaces_forwarded_for_with_the_address_it_saw() -> None:
    conf = (paths.repo_root() / "base/config/nginx/nginx.conf").read_text()
    directives = [line.split("#")[0].strip() for line in conf.splitlines()]
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in directives
    assert not any("$proxy_add_x_forwarded_for" in d for d in directives)
    assert "include /etc/nginx/yuxi/real-ip.conf;" in directives
    kustomization = (paths.repo_root() / "base/kustomization.yaml").read_text()
    assert "real-ip.conf=config/nginx/real-ip.conf" in kustomization


@pytest.mark.parametrize(
    ("cursor", "start"),
    [
        ("1796674926490-0", "(1796674926490-0"),  # after the client's last event, not from it
        ("(1796674926490-0", "(1796674926490-0"),
        ("0-0", "0-0"),  # the app's "from the first event" stays as it is
        ("0", "0"),
        ("", ""),
    ],
)
def test_the_run_events_cursor_is_exclusive(cursor: str, start: str) -> None:
    assert chat_runs.exclusive(cursor) == start


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(None, chat_runs.DEFAULT_DRAIN_S), ("", chat_runs.DEFAULT_DRAIN_S), ("0", 0), (" 90 ", 90)],
)
def test_the_worker_drain_is_whole_seconds(value: str | None, seconds: int) -> None:
    env = {} if value is None else {chat_runs.DRAIN_ENV: value}
    assert chat_runs.drain_seconds(env) == seconds


@pytest.mark.parametrize("value", ["-1", "1.5", "ten"])
def test_a_bad_worker_drain_is_one_line(value: str) -> None:
    with pytest.raises(ValueError) as caught:
        chat_runs.drain_seconds({chat_runs.DRAIN_ENV: value})
    assert str(caught.value) == (
        f"YUXI_K8S_WORKER_DRAIN_S must be a whole number of seconds (0 for none), got {value!r}"
    )


def test_the_local_worker_runs_the_worker_deployments_command() -> None:
    import yaml

    from yuxi_k8s.app.localrun import Worker

    manifest = yaml.safe_load((paths.repo_root() / "components/worker/worker.Deployment.yaml").read_text())
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    assert tuple(container["command"]) == Worker.COMMAND
