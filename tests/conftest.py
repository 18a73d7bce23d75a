"""Test harness: real PostgreSQL and Redis for every test, isolated and quick.

* Postgres: ``JULIA_TEST_DATABASE_URL`` (a server URL; any database on it) or an
  embedded pgserver started for the session and stopped at its end. The
  migrations are applied once into a template database named after their
  checksum; each test gets a fresh clone (``CREATE DATABASE ... TEMPLATE``),
  dropped afterwards.
* Redis: ``JULIA_TEST_REDIS_URL`` or an embedded server; each test writes under
  its own key namespace, deleted afterwards, so parallel runs never collide.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import redis

# The tests configure Júlia explicitly: nothing from the developer's shell leaks in.
for _name in list(os.environ):
    if _name.startswith("JULIA_") and not _name.startswith("JULIA_TEST_"):
        del os.environ[_name]

from julia.core import local, migrations  # noqa: E402
from julia.core.app import App  # noqa: E402
from julia.core.clock import FrozenClock  # noqa: E402
from julia.ops import catalog as _jobs  # noqa: E402, F401  (registers the built-in jobs)
from julia.settings import Settings  # noqa: E402

#: The agent tests' fixtures (the sandbox model, an App wired to it): tests/agent_kit.py.
pytest_plugins = ["agent_kit"]

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"  # copied from shared/fixtures
_TEMPLATE_LOCK = 0x4A554C5445  # advisory lock serialising template creation


def db_url(server_url: str, dbname: str) -> str:
    """The same server, another database (works for URLs and key=value strings)."""
    return psycopg.conninfo.make_conninfo(server_url, dbname=dbname)


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("JULIA_TEST_DATABASE_URL")
    if url:
        yield url
        return
    home = tmp_path_factory.mktemp("embedded-pg")
    yield local.ensure_postgres(home)
    local.stop_postgres(home)


@pytest.fixture(scope="session")
def template_db(pg_server_url: str) -> str:
    digest = hashlib.sha256()
    for m in migrations.discover():
        digest.update(m.checksum.encode())
    name = f"julia_tpl_{digest.hexdigest()[:12]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_TEMPLATE_LOCK,))
        try:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')
                try:
                    asyncio.run(migrations.migrate(db_url(pg_server_url, name)))
                except BaseException:
                    conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
                    raise
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_TEMPLATE_LOCK,))
    return name


@pytest.fixture
def fresh_db(pg_server_url: str) -> Iterator[str]:
    """An empty database (no migrations applied), dropped afterwards."""
    name = f"julia_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield db_url(pg_server_url, name)
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(pg_server_url: str, template_db: str) -> Iterator[str]:
    """A migrated database of its own for this test, dropped afterwards."""
    name = f"julia_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    yield db_url(pg_server_url, name)
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("JULIA_TEST_REDIS_URL")
    if url:
        yield url
        return
    home = tmp_path_factory.mktemp("embedded-redis")
    yield local.ensure_redis(home)
    local.stop_redis(home)


@pytest.fixture
def redis_namespace(redis_server_url: str) -> Iterator[str]:
    ns = f"jt{uuid.uuid4().hex[:10]}"
    yield ns
    client = redis.Redis.from_url(redis_server_url)
    try:
        keys = list(client.scan_iter(f"{ns}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def settings(
    database_url: str, redis_server_url: str, redis_namespace: str, tmp_path: Path
) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,  # type: ignore[arg-type]
        redis_url=redis_server_url,  # type: ignore[arg-type]
        redis_namespace=redis_namespace,
        home=tmp_path / "home",
        operator="tester",
        log_format="json",
    )


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    """The same configuration as environment variables, for the CLI and subprocesses."""
    return {
        **os.environ,
        "JULIA_DATABASE_URL": Settings.secret(settings.database_url) or "",
        "JULIA_REDIS_URL": Settings.secret(settings.redis_url) or "",
        "JULIA_REDIS_NAMESPACE": settings.redis_namespace,
        "JULIA_HOME": str(settings.home),
        "JULIA_OPERATOR": settings.operator,
        "JULIA_LOG_FORMAT": "json",
    }


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
async def app(settings: Settings, clock: FrozenClock) -> AsyncIterator[App]:
    async with App.open(settings, clock=clock) as opened:
        yield opened


@pytest.fixture
def cli(env: dict[str, str]):  # type: ignore[no-untyped-def]
    """Run ``julia ARGS...`` in-process with this test's configuration."""
    from typer.testing import CliRunner

    from julia_cli.main import app as cli_app

    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):  # type: ignore[no-untyped-def]
        return runner.invoke(cli_app, list(args), env=env, input=input, catch_exceptions=False)

    return invoke


# --- sandbox gateway (fila) ---


@pytest.fixture
def sandbox_gateway() -> Iterator[str]:
    """A running sandbox gateway (Evolution API v2) on a free port; yields its base URL.

    Controls: ``GET /_sandbox/messages``, ``POST``/``DELETE /_sandbox/faults``,
    ``POST /_sandbox/numbers``, ``POST /_sandbox/incoming`` (see julia.sandbox.gateway).
    """
    from julia.sandbox.gateway import running

    with running() as (url, _state):
        yield url


@pytest.fixture
def sandbox_process(env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """``julia sandbox gateway`` as its own process (for tests that run real workers);
    yields its base URL. Its log is ``tmp_path/sandbox.log``."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    log = tmp_path / "sandbox.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "julia_cli", "sandbox", "gateway", "--port", str(port)],
            env=env, stdout=out, stderr=out,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/_sandbox/messages", timeout=1).status_code == 200:
                    break
            if proc.poll() is not None:
                raise RuntimeError(log.read_text())
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
async def sandbox_app(
    settings: Settings, clock: FrozenClock, sandbox_gateway: str
) -> AsyncIterator[App]:
    """``app`` whose default Evolution instance is the sandbox; rate limits off."""
    configured = settings.model_copy(
        update={"evolution_url": sandbox_gateway, "rate_limits_enabled": False}
    )
    async with App.open(configured, clock=clock) as opened:
        yield opened


@pytest.fixture
async def client(app: App) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the shim in-process (ASGI), on this test's App."""
    from shim.app import create_app

    transport = httpx.ASGITransport(app=create_app(julia=app))
    async with httpx.AsyncClient(transport=transport, base_url="http://shim") as c:
        yield c
