"""Health: readiness (and the shim's /health/ready) with Redis stopped and back, the
component scores, the ``julia health --json`` contract, and "not available"."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from julia.core import local, migrations
from julia.core.app import App
from julia.core.clock import FrozenClock
from julia.ops import health, heartbeat
from julia.ops.jobs import runner
from julia.settings import Settings


@pytest.fixture
async def own_redis_app(
    settings: Settings, clock: FrozenClock, tmp_path: Path
) -> AsyncIterator[tuple[App, Path]]:
    """An App on a Redis of its own (never the shared server), which the test may stop."""
    home = tmp_path / "own-redis"
    url = local.ensure_redis(home)
    configured = settings.model_copy(update={"redis_url": SecretStr(url)})
    try:
        async with App.open(configured, clock=clock) as app:
            yield app, home
    finally:
        local.stop_redis(home)


async def test_ready_is_503_with_redis_stopped_and_200_once_back(
    own_redis_app: tuple[App, Path],
) -> None:
    from shim.app import create_app

    app, home = own_redis_app
    transport = httpx.ASGITransport(app=create_app(julia=app))
    async with httpx.AsyncClient(transport=transport, base_url="http://shim") as client:
        ok = await client.get("/health/ready")
        assert ok.status_code == 200 and ok.json()["redis"] == "ok"
        assert (await health.readiness(app)).ok

        local.stop_redis(home)
        down = await client.get("/health/ready")
        assert down.status_code == 503
        assert down.json()["postgres"] == "ok" and down.json()["redis"] != "ok"
        ready = await health.readiness(app)
        assert not ready.ok and ready.checks["redis"].startswith("unavailable")
        report = await health.check(app)
        assert report.component("storage").summary == "Redis unreachable"
        assert report.status == "unhealthy"
        assert (await client.get("/health")).status_code == 200  # liveness needs nothing

        local.ensure_redis(home)
        back = await client.get("/health/ready")
        assert back.status_code == 200 and back.json()["status"] == "ok"
        assert (await health.readiness(app)).ok


async def test_healthy_system_scores_100_and_cli_exits_0(cli, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    # real time: the CLI process reads the wall clock
    async with App.open(settings) as app:
        await heartbeat.register(app, "w1", ["fila"])
        await heartbeat.beat(app, "w1")
        await runner.run_job(app, "watchdog")
        report = await health.check(app, deep=True)
    scores = {c.name: (c.status, c.score) for c in report.components}
    assert scores["storage"] == scores["queue"] == scores["workers"] == ("healthy", 100)
    assert scores["scheduler"] == ("healthy", 100)
    assert scores["chips"] == ("not_available", None)  # no chip registered
    assert report.status == "healthy" and report.score == 100
    result = await asyncio.to_thread(cli, "health", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "healthy"
    assert {c["name"]: c["score"] for c in data["components"]}["workers"] == 100


async def test_no_worker_is_degraded_and_cli_exits_1(cli, app: App) -> None:  # type: ignore[no-untyped-def]
    result = await asyncio.to_thread(cli, "health", "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    workers = next(c for c in data["components"] if c["name"] == "workers")
    assert (workers["status"], workers["score"]) == ("degraded", 50)
    assert data["status"] == "degraded" and data["score"] == 50
    table = await asyncio.to_thread(cli, "health")
    assert table.exit_code == 1 and "workers" in table.stdout


async def test_chips_component_from_the_pool(app: App) -> None:
    from julia.chips import pool

    await pool.add(app, instance="c1", telefone="+5511999990001", trust_score=85, status="active")
    await pool.add(app, instance="c2", telefone="+5511999990002", trust_score=70, status="active")
    comp = await health.chips(app, deep=True)
    assert comp.details["total"] == 2 and comp.details["may_prospect"] == 1
    # two available, below the minimum of 3 active chips
    assert comp.status == "degraded" and "below the minimum" in comp.summary
    numbers = {c["telefone"] for c in comp.details["chips"]}
    assert all("99999" not in n for n in numbers)  # masked


async def test_missing_capabilities_are_not_available(
    fresh_db: str, redis_server_url: str, redis_namespace: str, tmp_path: Path
) -> None:
    only_domain = tmp_path / "migrations"
    only_domain.mkdir()
    src = migrations.default_directory() / "0001_domain.sql"
    shutil.copy(src, only_domain / src.name)
    await migrations.migrate(fresh_db, only_domain)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=fresh_db,  # type: ignore[arg-type]
        redis_url=redis_server_url,  # type: ignore[arg-type]
        redis_namespace=redis_namespace,
        home=tmp_path / "home",
    )
    async with App.open(settings, clock=FrozenClock()) as app:
        report = await health.check(app)
        from julia.ops import overview

        view = await overview.overview(app)
    statuses = {c.name: c.status for c in report.components}
    assert statuses["storage"] == "healthy"
    for name in ("queue", "workers", "scheduler", "chips", "circuits"):
        assert statuses[name] == "not_available", (name, report.component(name).summary)
    assert report.status == "healthy"
    assert view["queue"] is None and view["alerts"] == []
