"""The embedded servers: started on first use, shared under one JULIA_HOME, stopped on demand."""

from __future__ import annotations

import json
import os
from pathlib import Path

import psycopg
import pytest
import redis
from typer.testing import CliRunner

from julia.core import local
from julia.core.app import App
from julia.core.errors import StorageError
from julia.settings import Settings
from julia_cli.main import app as cli_app


@pytest.fixture
def home(tmp_path: Path):  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    yield home
    local.stop(home)  # never leave a server behind, even when the test failed


def test_embedded_redis_is_shared_and_stops(home: Path) -> None:
    url = local.ensure_redis(home)
    assert local.ensure_redis(home) == url  # the second caller reuses the running server
    client = redis.Redis.from_url(url)
    assert client.ping()
    client.close()
    st = local.redis_status(home)
    assert st.running and st.pid
    assert local.stop_redis(home) is True
    assert not local.redis_status(home).running
    assert local.stop_redis(home) is False


def test_embedded_mode_end_to_end_through_the_cli(home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JULIA_")}
    env |= {"JULIA_HOME": str(home), "JULIA_LOG_FORMAT": "json"}
    runner = CliRunner()
    assert runner.invoke(cli_app, ["db", "migrate"], env=env).exit_code == 0
    info = json.loads(runner.invoke(cli_app, ["info", "--json"], env=env).stdout)
    assert info["database"]["embedded"] is True and info["redis"]["embedded"] is True
    assert info["migrations"]["pending"] == []
    with psycopg.connect(local.ensure_postgres(home)) as conn:
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] > 0  # type: ignore[index]
    status = json.loads(runner.invoke(cli_app, ["local", "status", "--json"], env=env).stdout)
    assert [s["running"] for s in status] == [True, True]
    with psycopg.connect(local.ensure_postgres(home)):  # a running shim's connection
        result = runner.invoke(cli_app, ["local", "stop"], env=env)
    assert result.exit_code == 0 and "postgres, redis" in result.stdout
    assert "warning: 1 client connection(s)" in result.stderr  # not stopped without a word
    status = json.loads(runner.invoke(cli_app, ["local", "status", "--json"], env=env).stdout)
    assert [s["running"] for s in status] == [False, False]


async def test_unreachable_postgres_is_a_storage_error(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url="postgresql://postgres@127.0.0.1:1/nowhere",  # type: ignore[arg-type]
        redis_url="redis://127.0.0.1:1/0",  # type: ignore[arg-type]
        home=tmp_path,
        db_connect_timeout_s=1,
    )
    with pytest.raises(StorageError, match="cannot connect to Postgres"):
        async with App.open(settings):
            pass


async def test_app_uses_injected_clock_and_closes_everything(app: App) -> None:
    assert app.clock.now().year == 2026
    async with app.pool.connection() as conn:
        cur = await conn.execute("SELECT 1 AS one")
        assert await cur.fetchone() == {"one": 1}
    assert await app.redis.ping()
    assert app.keys.key("x", 1) == f"{app.settings.redis_namespace}:x:1"
