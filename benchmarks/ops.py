"""What operations cost: raising an alert (new and deduplicated), one job run's overhead
(lock, tick row, record), a `julia health` check and a `julia top` frame, with 20,000
messages in the queue.

Uses a scratch database on the configured server (dropped at the end) and its own Redis
namespace (its keys deleted at the end). Prints p50/p99 per operation (median of 3
runs); the last line is a JSON object of the figures.

    python benchmarks/ops.py            # JULIA_DATABASE_URL / JULIA_REDIS_URL, else embedded
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import redis
from pydantic import SecretStr

from julia.core import migrations
from julia.core.app import App, resolve_endpoints
from julia.fila import queue
from julia.notify import alerts
from julia.ops import health, overview
from julia.ops.jobs import registry, runner
from julia.ops.jobs.registry import Every, job
from julia.settings import Settings

RUNS = 3


@job("bench_noop", "benchmark: does nothing", lambda s: Every(60))
async def bench_noop(app: App) -> int:
    return 0


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def timed(n: int, fn: Callable[[int], Awaitable[Any]]) -> dict[str, float]:
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        await fn(i)
        samples.append((time.perf_counter() - t0) * 1000)
    return {"p50_ms": pct(samples, 0.5), "p99_ms": pct(samples, 0.99)}


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]}


async def measure(settings: Settings) -> dict[str, dict[str, float]]:
    async with App.open(settings) as app:
        await queue.enqueue_many(
            app,
            [queue.NewMessage(f"oi {i}", telefone=f"+55119{i:08d}", tipo="campanha")
             for i in range(20_000)],
        )  # fmt: skip
        registry.load()
        results: dict[str, list[dict[str, float]]] = {}
        for run in range(RUNS):
            ops: dict[str, tuple[int, Callable[[int], Awaitable[Any]]]] = {
                "alert_new": (300, lambda i, r=run: alerts.raise_alert(
                    app, "bench.new", f"alert {i}", key=f"{r}-{i}")),
                "alert_dedup": (300, lambda i: alerts.raise_alert(app, "bench.dup", "same")),
                "job_run": (300, lambda i: runner.run_job(app, "bench_noop", manual=True)),
                "health_check": (30, lambda i: health.check(app)),
                "top_frame": (30, lambda i: overview.overview(app)),
            }  # fmt: skip
            for name, (n, fn) in ops.items():
                results.setdefault(name, []).append(await timed(n, fn))
        return {name: median_of(runs) for name, runs in results.items()}


def main() -> None:
    base = Settings()
    endpoints = resolve_endpoints(base)
    name = f"julia_bench_{uuid.uuid4().hex[:8]}"
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    url = psycopg.conninfo.make_conninfo(endpoints.database_url, dbname=name)
    with psycopg.connect(endpoints.database_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        asyncio.run(migrations.migrate(url))
        settings = base.model_copy(
            update={"database_url": SecretStr(url), "redis_namespace": namespace,
                    "log_level": "WARNING"}
        )  # fmt: skip
        from julia.core import logs

        logs.configure("ERROR", "json")  # alert.raised is a warning: keep the output to figures
        figures = asyncio.run(measure(settings))
    finally:
        with psycopg.connect(endpoints.database_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        client = redis.Redis.from_url(endpoints.redis_url)
        keys = list(client.scan_iter(f"{namespace}:*"))
        if keys:
            client.delete(*keys)
        client.close()
    for op, d in figures.items():
        print(f"{op:13} p50 {d['p50_ms']:7.2f} ms   p99 {d['p99_ms']:7.2f} ms")
    print(json.dumps({f"{op}_{k}": v for op, d in figures.items() for k, v in d.items()}))


if __name__ == "__main__":
    main()
