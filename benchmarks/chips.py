"""What the chip pool costs the send path.

* ``select``: one ``chips.selection.select`` (candidates query with affinity, usage and
  connection, breaker state per eligible chip, the rate-limit reservation, the
  selection-log row) with 10 active chips, the slot given back; sequential, one
  process; p50/p99 in microseconds and selections per second.
* ``drain``: MESSAGES replies drained by the worker's outbound consumer (claim, route,
  send over HTTP to the in-process sandbox gateway at zero latency, finish; with what
  it runs beside: the listener and the breaker watch) in one process, on the loop
  ``julia worker`` runs (``julia.core.runtime.run``: uvloop, its collector settings),
  after WARMUP replies that are not measured (new chips' breakers fill their windows),
  once with no chips (the single instance) and once with 10 chips (every message
  selected, sent through its chip's breaker, its events recorded); sends per second and
  the ratio, the CPU milliseconds per send (this process's event loop thread; the
  sandbox answers from another thread) and due→sent p50/p99 while draining. Rate limits
  off, as in ``benchmarks/fila.py``.
* ``drain_sep``: the same two drains against a ``julia sandbox gateway`` process, as
  ``benchmarks/fila.py`` runs it: the gateway no longer takes this process's GIL, and
  shares the other core with Postgres instead (in production both are elsewhere).

Figures are medians over RUNS runs. The last line is a JSON object of the figures.

    python benchmarks/chips.py   # JULIA_DATABASE_URL / JULIA_REDIS_URL, else embedded
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from pydantic import SecretStr

from julia.chips import pool, selection
from julia.core import logs, migrations, runtime
from julia.core.app import App, resolve_endpoints
from julia.fila import queue
from julia.fila.queue import NewMessage
from julia.outbound import consumer
from julia.resilience import ratelimit
from julia.sandbox.gateway import running
from julia.settings import Settings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fila import free_port, spawn, wait_http  # the sibling benchmark's helpers

SELECTIONS, MESSAGES, RUNS = 1_000, 10_000, 3
#: Replies sent before a drain is measured: each of 10 chips' breakers fills its window.
WARMUP = 500


async def _chips(app: App) -> None:
    for i in range(10):
        await pool.add(app, instance=f"bench-{i}", telefone=f"+55119000{i:05d}",
                       trust_score=85, status="active")  # fmt: skip


async def bench_select(settings: Settings) -> dict[str, float]:
    async with App.open(settings) as app:
        await _chips(app)
        samples = []
        for i in range(SELECTIONS):
            t = time.perf_counter_ns()
            sel = await selection.select(app, tipo="resposta", telefone=f"+55119{i:08d}")
            samples.append(time.perf_counter_ns() - t)
            await ratelimit.give_back(app, sel.decision.ticket)
        await _reset(app)
    samples.sort()
    return {
        "p50_us": samples[len(samples) // 2] / 1000,
        "p99_us": samples[int(len(samples) * 0.99)] / 1000,
        "per_s": SELECTIONS / (sum(samples) / 1e9),
    }


async def bench_drain(settings: Settings, with_chips: bool) -> dict[str, float]:
    async with App.open(settings) as app:
        if with_chips:
            await _chips(app)
        stop = asyncio.Event()
        worker = asyncio.create_task(consumer.run(app, stop, "bench"))  # as `julia worker`
        try:
            # new breakers fill their windows first, as they have in production
            await _sent(app, [_reply("w", i, "+551198") for i in range(WARMUP)], WARMUP)
            async with app.pool.connection() as conn:
                await conn.execute("DELETE FROM fila_mensagens")
            # thread_time: this loop's CPU only (the sandbox answers from its own thread)
            cpu = time.thread_time()
            took = await _sent(app, [_reply("m", i, "+55119") for i in range(MESSAGES)], MESSAGES)
            cpu = time.thread_time() - cpu
        finally:
            stop.set()
            await worker
        async with app.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT extract(epoch FROM enviada_em - agendar_para) * 1000 AS ms"
                " FROM fila_mensagens WHERE status = 'enviada' ORDER BY 1"
            )
            lat = [float(r["ms"]) for r in await cur.fetchall()]
        await _reset(app)
    assert len(lat) == MESSAGES, len(lat)
    return {
        "per_s": MESSAGES / took,
        "cpu_ms_per_send": cpu * 1000 / MESSAGES,
        "p50_ms": lat[len(lat) // 2],
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
    }


def _reply(tag: str, i: int, prefix: str) -> NewMessage:
    return NewMessage(f"{tag}{i}", telefone=f"{prefix}{i:0{13 - len(prefix)}d}", tipo="resposta")


async def _sent(app: App, messages: list[NewMessage], n: int) -> float:
    """Enqueue, wait until the worker has sent ``n``; the seconds from the enqueue to the
    last send (its ``enviada_em``: exact, whenever the poll notices). The poll is one
    index probe, so watching the drain does not load the Postgres it measures."""
    start = app.clock.now()
    await queue.enqueue_many(app, messages)
    while True:
        async with app.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT EXISTS (SELECT 1 FROM fila_mensagens"
                " WHERE status IN ('pendente', 'processando')) AS busy"
            )
            row = await cur.fetchone()
            if row is not None and not row["busy"]:
                cur = await conn.execute(
                    "SELECT count(*) AS n, max(enviada_em) AS last FROM fila_mensagens"
                    " WHERE status = 'enviada'"
                )
                done = await cur.fetchone()
                assert done is not None and done["n"] == n, done
                return float((done["last"] - start).total_seconds())
        await asyncio.sleep(0.02)


async def _reset(app: App) -> None:
    keys = [k async for k in app.redis.scan_iter(app.keys.pattern(), count=1000)]
    for i in range(0, len(keys), 500):
        await app.redis.delete(*keys[i : i + 500])


def _fresh_db(server: str) -> tuple[str, str]:
    name = f"julia_bench_chips_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = psycopg.conninfo.make_conninfo(server, dbname=name)
    asyncio.run(migrations.migrate(url))
    return name, url


def _drop(server: str, name: str) -> None:
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def _sandbox_process() -> Iterator[str]:
    """A ``julia sandbox gateway`` in its own process (as ``benchmarks/fila.py`` runs it)."""
    port = free_port()
    proc = spawn([sys.executable, "-m", "julia_cli", "sandbox", "gateway", "--port", str(port)],
                 os.environ.copy())  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/_sandbox/messages")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    logs.configure("WARNING", "json")
    base = Settings()
    server = resolve_endpoints(base).database_url
    runs: dict[str, list[float]] = {"select_p50_us": [], "select_p99_us": [],
                                    "selections_per_s": [], "drain_no_chips_per_s": [],
                                    "drain_chips_per_s": [],
                                    "drain_no_chips_cpu_ms_per_send": [],
                                    "drain_chips_cpu_ms_per_send": [],
                                    "drain_no_chips_p50_ms": [], "drain_no_chips_p99_ms": [],
                                    "drain_chips_p50_ms": [], "drain_chips_p99_ms": [],
                                    "drain_sep_no_chips_per_s": [], "drain_sep_chips_per_s": [],
                                    "drain_sep_no_chips_cpu_ms_per_send": [],
                                    "drain_sep_chips_cpu_ms_per_send": []}  # fmt: skip
    with running() as (thread_url, _state), _sandbox_process() as process_url:
        for _ in range(RUNS):
            for case in ("select", "no_chips", "chips", "sep_no_chips", "sep_chips"):
                gateway_url = process_url if case.startswith("sep_") else thread_url
                name, url = _fresh_db(server)
                try:
                    s = base.model_copy(update={
                        "database_url": SecretStr(url), "evolution_url": gateway_url,
                        "redis_namespace": f"benchchips{uuid.uuid4().hex[:6]}",
                        "rate_limits_enabled": False, "log_level": "WARNING",
                    })  # fmt: skip
                    if case == "select":
                        r = runtime.run(bench_select(s))  # as the drains: one loop for every figure
                        runs["select_p50_us"].append(r["p50_us"])
                        runs["select_p99_us"].append(r["p99_us"])
                        runs["selections_per_s"].append(r["per_s"])
                    else:
                        # on the loop `julia worker` runs (uvloop, its collector settings)
                        d = runtime.run(bench_drain(s, case in ("chips", "sep_chips")))
                        runs[f"drain_{case}_per_s"].append(d["per_s"])
                        runs[f"drain_{case}_cpu_ms_per_send"].append(d["cpu_ms_per_send"])
                        if not case.startswith("sep_"):
                            runs[f"drain_{case}_p50_ms"].append(d["p50_ms"])
                            runs[f"drain_{case}_p99_ms"].append(d["p99_ms"])
                finally:
                    _drop(server, name)
    figures = {k: round(statistics.median(v), 1 if "cpu" not in k else 3) for k, v in runs.items()}
    for sep in ("", "sep_"):
        figures[f"drain_{sep}ratio_chips_vs_none"] = round(
            figures[f"drain_{sep}chips_per_s"] / figures[f"drain_{sep}no_chips_per_s"], 3
        )
    print(f"select: {SELECTIONS} sequential selections, 10 active chips, median of {RUNS} runs")
    print(f"  p50 {figures['select_p50_us']} µs, p99 {figures['select_p99_us']} µs,"
          f" {figures['selections_per_s']} selections/s")  # fmt: skip
    print(f"drain: {MESSAGES} replies, one process, sandbox at zero latency")
    ratio = figures["drain_ratio_chips_vs_none"]
    print(f"  no chips {figures['drain_no_chips_per_s']} sends/s, 10 chips"
          f" {figures['drain_chips_per_s']} sends/s (× {ratio})")  # fmt: skip
    for case in ("no_chips", "chips"):
        f = {k.removeprefix(f"drain_{case}_"): v for k, v in figures.items()}
        print(f"  {case}: {f['cpu_ms_per_send']} ms CPU per send,"
              f" due→sent p50 {f['p50_ms']} ms, p99 {f['p99_ms']} ms")  # fmt: skip
    sep = {k.removeprefix("drain_sep_"): v for k, v in figures.items() if "_sep_" in k}
    print(f"drain, sandbox in its own process: no chips {sep['no_chips_per_s']} sends/s"
          f" ({sep['no_chips_cpu_ms_per_send']} ms CPU), 10 chips {sep['chips_per_s']}"
          f" sends/s ({sep['chips_cpu_ms_per_send']} ms CPU)"
          f" (× {sep['ratio_chips_vs_none']})")  # fmt: skip
    sys.stdout.write(json.dumps(figures) + "\n")


if __name__ == "__main__":
    main()
