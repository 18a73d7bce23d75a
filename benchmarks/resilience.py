"""Cost of one rate-limit check and one breaker call through Redis, beside ``limits``.

From one process, sequentially (latency, not throughput under load), on the same Redis
in the same run:

* ``ratelimit_lua``: Júlia's check-and-take Lua script alone (every limit of a
  proactive message: doctor/day, chip hour/day, chip interval, chip burst), allowed;
* ``ratelimit_take``: ``ratelimit.take()`` as the queue calls it: the same script plus
  the ``rate_limit_events`` insert in Postgres that the fallback counts;
* ``ratelimit_denied``: ``take()`` refused by a full window (no Postgres write);
* ``breaker_call``: ``await breaker.call(noop)`` (two Lua calls: acquire and record);
* ``limits_moving_window``: the ``limits`` library's ``MovingWindowRateLimiter.hit``
  (one moving-window limit, async redis-py) on the same Redis.

Each figure is the median over RUNS runs of CALLS calls (p50/p99 in microseconds and
calls per second). The last line is a JSON object of the figures.

    python benchmarks/resilience.py   # JULIA_DATABASE_URL / JULIA_REDIS_URL, else embedded
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
from limits import parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from pydantic import SecretStr

from julia.core import migrations
from julia.core.app import App, resolve_endpoints
from julia.core.clock import FrozenClock
from julia.resilience import ratelimit
from julia.resilience._shared import script
from julia.resilience.breaker import breakers
from julia.settings import Settings

CALLS, RUNS = 2_000, 5


async def measure(fn: Callable[[int], Awaitable[Any]]) -> dict[str, float]:
    samples = []
    for i in range(CALLS):
        t = time.perf_counter_ns()
        await fn(i)
        samples.append(time.perf_counter_ns() - t)
    samples.sort()
    return {
        "p50_us": samples[len(samples) // 2] / 1000,
        "p99_us": samples[int(len(samples) * 0.99)] / 1000,
        "calls_per_s": CALLS / (sum(samples) / 1e9),
    }


def median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.median(r[k] for r in runs), 1) for k in runs[0]}


def limits_uri(redis_url: str) -> str:
    if redis_url.startswith("unix://"):
        return "async+redis+unix://" + redis_url[len("unix://") :]
    return "async+" + redis_url


async def bench(settings: Settings) -> dict[str, dict[str, float]]:
    clock = FrozenClock(datetime(2026, 1, 5, 13, tzinfo=UTC))  # a Monday, 10:00 in São Paulo
    async with App.open(settings, clock=clock) as app:
        limiter = MovingWindowRateLimiter(
            RedisStorage(
                limits_uri(app.endpoints.redis_url),
                implementation="redispy",
                key_prefix=app.keys.key("limits"),
            )
        )
        big = parse("1000000000/hour")
        b = breakers(app).get("evolution")

        async def noop() -> None:
            return None

        async def lua(i: int) -> None:
            keys = [app.keys.key("bench", f"{k}:{i % 500}") for k in "abcde"]
            args = [i, uuid.uuid4().hex, 1, 1, 10**9, 86_400_000, 10**9, 3_600_000, 10**9,
                    10**9, 60_000, 0]  # fmt: skip
            await script(app, "ratelimit_take")(keys=keys, args=args)
            clock.advance(0.001)

        async def take(i: int) -> None:
            d = await ratelimit.take(
                app, tipo="prospeccao", telefone=f"+55119{i % 500:08d}", chip_id=i % 50
            )
            assert d.allowed, d
            clock.advance(0.001)

        async def denied(i: int) -> None:
            d = await ratelimit.take(app, tipo="prospeccao", telefone="+5511900000000", chip_id=1)
            assert not d.allowed

        async def breaker_call(i: int) -> None:
            await b.call(noop)

        async def limits_hit(i: int) -> None:
            await limiter.hit(big, "bench", str(i % 500))

        # Every limit high except the one "denied" fills; the interval off.
        s = app.settings
        s.rate_limit_medico_daily = 10**6
        s.rate_limit_chip_hourly = s.rate_limit_chip_daily = s.rate_limit_chip_burst = 10**9
        s.rate_limit_interval_min_s = s.rate_limit_interval_max_s = 0
        cases = {
            "ratelimit_lua": lua,
            "ratelimit_take": take,
            "breaker_call": breaker_call,
            "limits_moving_window": limits_hit,
        }
        out: dict[str, list[dict[str, float]]] = {k: [] for k in [*cases, "ratelimit_denied"]}
        for _ in range(RUNS):
            for name, fn in cases.items():
                await fn(0)  # warm up (script load, connections)
                out[name].append(await measure(fn))
        s.rate_limit_medico_daily = 1  # that doctor's window is now full
        for _ in range(RUNS):
            out["ratelimit_denied"].append(await measure(denied))
        keys = [k async for k in app.redis.scan_iter(app.keys.pattern(), count=1000)]
        for i in range(0, len(keys), 500):
            await app.redis.delete(*keys[i : i + 500])
        return {k: median(v) for k, v in out.items()}


def main() -> None:
    base = Settings()
    server = resolve_endpoints(base).database_url
    name = f"julia_bench_res_{uuid.uuid4().hex[:8]}"
    url = psycopg.conninfo.make_conninfo(server, dbname=name)
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        asyncio.run(migrations.migrate(url))
        settings = base.model_copy(
            update={
                "database_url": SecretStr(url),
                "redis_namespace": f"benchres{uuid.uuid4().hex[:6]}",
            }
        )
        figures = asyncio.run(bench(settings))
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    lim = figures["limits_moving_window"]
    figures["ratio_vs_limits"] = {
        k: round(figures[k]["p50_us"] / lim["p50_us"], 2)
        for k in ("ratelimit_lua", "ratelimit_take", "ratelimit_denied", "breaker_call")
    }
    print(f"{CALLS} sequential calls per run, median of {RUNS} runs, one process")
    print(f"{'case':<22} {'p50 µs':>9} {'p99 µs':>9} {'calls/s':>9}  p50 / limits")
    for k, v in figures.items():
        if k == "ratio_vs_limits":
            continue
        ratio = figures["ratio_vs_limits"].get(k, 1.0)
        print(f"{k:<22} {v['p50_us']:>9} {v['p99_us']:>9} {v['calls_per_s']:>9}  {ratio}")
    sys.stdout.write(json.dumps(figures) + "\n")


if __name__ == "__main__":
    main()
