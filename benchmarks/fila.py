"""Outbound queue throughput: bulk enqueue, then drain through the sandbox gateway.

Enqueues 20,000 messages in bulk (median of 3), then drains them with 1 and with 2
``julia worker`` processes against a ``julia sandbox gateway`` process at zero
latency, and prints the enqueue rate, sends per second and p50/p99 from due time
to sent. In the same run, the same 20,000 sends go through procrastinate (a
Postgres task queue) whose task makes the same HTTP call to the sandbox, with
1 and 2 worker processes, and the ratio of our rate to theirs is printed.

    python benchmarks/fila.py [--messages 20000] [--concurrency 8] [--log-level WARNING]
                              [--runs 3]

Drains are medians of ``--runs`` interleaved runs; beside sends/s and due→sent, the
workers' CPU milliseconds per send (user + system, from ``/proc``) are printed.

Uses JULIA_DATABASE_URL / JULIA_REDIS_URL (else the embedded servers); creates
scratch databases and drops them. Rate limits are off (JULIA_RATE_LIMITS_ENABLED
=false); breakers stay on. The last line is a JSON object of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
from pydantic import SecretStr

from julia.core import migrations
from julia.core.app import App, resolve_endpoints
from julia.fila import queue
from julia.fila.queue import NewMessage
from julia.settings import Settings

HERE = Path(__file__).resolve()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_http(url: str) -> None:
    for _ in range(400):
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


async def sandbox_call(method: str, url: str) -> Any:
    async with httpx.AsyncClient(timeout=60) as http:
        response = await http.request(method, url)
        response.raise_for_status()
        return response.json()


def scratch_db(server: str) -> str:
    name = f"julia_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_db(server: str, name: str) -> None:
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def messages(n: int, tag: str) -> list[NewMessage]:
    return [NewMessage(f"{tag} {i}", telefone=f"+55119{i:08d}") for i in range(n)]


# --- Júlia ----------------------------------------------------------------------


async def measure_enqueue(settings: Settings, n: int, runs: int = 3) -> float:
    rates = []
    async with App.open(settings) as app:
        for r in range(runs):
            batch = messages(n, f"enq{r}")
            t0 = time.perf_counter()
            result = await queue.enqueue_many(app, batch)
            rates.append(n / (time.perf_counter() - t0))
            assert result.inserted == n
            async with app.pool.connection() as conn:
                await conn.execute("DELETE FROM fila_mensagens")
    return statistics.median(rates)


async def drain_julia(
    settings: Settings, env: dict[str, str], sandbox: str, n: int, procs: int, tag: str
) -> dict[str, float]:
    await sandbox_call("DELETE", f"{sandbox}/_sandbox/messages")
    workers = [
        spawn(
            [
                sys.executable,
                "-m",
                "julia_cli",
                "worker",
                "--consumer",
                "fila",
                "--name",
                f"{tag}-{i}",
            ],
            env,
        )
        for i in range(procs)
    ]
    try:
        async with App.open(settings) as app:
            for _ in range(400):  # wait until every worker has registered and listens
                async with app.pool.connection() as conn:
                    cur = await conn.execute(
                        "SELECT count(*) AS n FROM workers WHERE id LIKE %s AND stopped_at IS NULL",
                        (f"{tag}-%",),
                    )
                    row = await cur.fetchone()
                if row and row["n"] == procs:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            cpu0 = sum(_cpu_s(w.pid) for w in workers)
            t0 = time.perf_counter()
            await queue.enqueue_many(app, messages(n, tag))
            enqueued = time.perf_counter()
            while True:
                st = await queue.stats(app)
                if st["enviada"] >= n:
                    break
                assert all(w.poll() is None for w in workers), "a worker died"
                await asyncio.sleep(0.2)
            cpu = sum(_cpu_s(w.pid) for w in workers) - cpu0
            async with app.pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT extract(epoch FROM enviada_em - agendar_para) AS lat,"
                    " extract(epoch FROM enviada_em) AS at, extract(epoch FROM agendar_para) AS due"
                    " FROM fila_mensagens WHERE texto LIKE %s",
                    (f"{tag} %",),
                )
                rows = list(await cur.fetchall())
                await conn.execute("DELETE FROM fila_mensagens")
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(60)
    seen = await sandbox_call("GET", f"{sandbox}/_sandbox/messages")
    texts = [m["text"] for m in seen]
    assert len(texts) == len(set(texts)) == n, "the sandbox did not see each message once"
    lat = [float(r["lat"]) for r in rows]
    first_due = min(float(r["due"]) for r in rows)
    last_sent = max(float(r["at"]) for r in rows)
    return {
        "sends_per_s": n / (last_sent - first_due),
        "p50_ms": percentile(lat, 50) * 1000,
        "p99_ms": percentile(lat, 99) * 1000,
        "enqueue_s": enqueued - t0,
        "cpu_ms_per_send": cpu * 1000 / n,
    }


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a worker process so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- procrastinate ------------------------------------------------------------------


def procrastinate_app(url: str, sandbox: str) -> Any:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))
    client: dict[str, httpx.AsyncClient] = {}

    @app.task(name="send")
    async def send(number: str, text: str) -> None:
        if "c" not in client:
            client["c"] = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=100)
            )
        r = await client["c"].post(
            f"{sandbox}/message/sendText/bench",
            json={"number": number, "text": text},
            headers={"apikey": "bench"},
        )
        r.raise_for_status()

    return app


def procrastinate_worker(url: str, sandbox: str, concurrency: int) -> None:
    app = procrastinate_app(url, sandbox)

    async def run() -> None:
        async with app.open_async():
            await app.run_worker_async(
                concurrency=concurrency, wait=True, install_signal_handlers=True
            )

    asyncio.run(run())


async def drain_procrastinate(
    url: str, sandbox: str, n: int, procs: int, concurrency: int
) -> dict[str, float]:
    await sandbox_call("DELETE", f"{sandbox}/_sandbox/messages")
    app = procrastinate_app(url, sandbox)
    workers = [
        spawn(
            [sys.executable, str(HERE), "--procrastinate-worker", url, sandbox, str(concurrency)],
            os.environ.copy(),
        )
        for _ in range(procs)
    ]
    try:
        await asyncio.sleep(3)  # let them start and LISTEN
        async with app.open_async():
            t0 = time.time()
            await app.tasks["send"].batch_defer_async(
                *({"number": f"55119{i:08d}", "text": f"proc {i}"} for i in range(n))
            )
            while True:
                with psycopg.connect(url) as conn:
                    row = conn.execute(
                        "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
                    ).fetchone()
                    assert row is not None
                if row[0] >= n:
                    break
                assert all(w.poll() is None for w in workers), "a procrastinate worker died"
                await asyncio.sleep(0.2)
            with psycopg.connect(url) as conn:
                row = conn.execute(
                    "SELECT extract(epoch FROM max(at)) FROM procrastinate_events"
                    " WHERE type = 'succeeded'"
                ).fetchone()
                assert row is not None
                last = float(row[0])
                conn.execute("DELETE FROM procrastinate_events")
                conn.execute("DELETE FROM procrastinate_jobs")
                conn.commit()
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(60)
    texts = [m["text"] for m in await sandbox_call("GET", f"{sandbox}/_sandbox/messages")]
    assert len(set(texts)) == n
    return {"per_s": n / (last - t0)}


# --- main ---------------------------------------------------------------------------


def _median(samples: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(s[k] for s in samples) for k in samples[0]}


async def amain(
    n: int, concurrency: int, log_level: str = "WARNING", runs: int = 3
) -> dict[str, Any]:
    base = Settings()
    endpoints = resolve_endpoints(base)
    server = endpoints.database_url
    ours, theirs = scratch_db(server), scratch_db(server)
    url = psycopg.conninfo.make_conninfo(server, dbname=ours)
    purl = psycopg.conninfo.make_conninfo(server, dbname=theirs)
    port = free_port()
    sandbox = f"http://127.0.0.1:{port}"
    sb = spawn([sys.executable, "-m", "julia_cli", "sandbox", "gateway", "--port", str(port)],
               os.environ.copy())  # fmt: skip
    namespace = f"bench{uuid.uuid4().hex[:6]}"
    settings = base.model_copy(
        update={
            "database_url": SecretStr(url),
            "redis_url": SecretStr(endpoints.redis_url),
            "redis_namespace": namespace,
            "evolution_url": sandbox,
            "rate_limits_enabled": False,
        }
    )
    env = os.environ | {
        "JULIA_DATABASE_URL": url,
        "JULIA_REDIS_URL": endpoints.redis_url,
        "JULIA_REDIS_NAMESPACE": namespace,
        "JULIA_EVOLUTION_URL": sandbox,
        "JULIA_RATE_LIMITS_ENABLED": "false",
        "JULIA_LOG_LEVEL": log_level,
        "JULIA_WORKER_CONCURRENCY": str(concurrency),
    }
    try:
        await migrations.migrate(url)
        wait_http(f"{sandbox}/_sandbox/calls")
        enqueue = await measure_enqueue(settings, n)
        print(f"enqueue {n:,} in bulk: {enqueue:,.0f} messages/s (median of 3)")
        papp = procrastinate_app(purl, sandbox)
        async with papp.open_async():
            await papp.schema_manager.apply_schema_async()
        samples: dict[int, list[dict[str, float]]] = {1: [], 2: []}
        psamples: dict[int, list[dict[str, float]]] = {1: [], 2: []}
        for r in range(runs):  # interleaved, so a busy moment hits both sides alike
            for procs in (1, 2):
                tag = f"j{procs}r{r}"
                samples[procs].append(await drain_julia(settings, env, sandbox, n, procs, tag))
                psamples[procs].append(
                    await drain_procrastinate(purl, sandbox, n, procs, concurrency)
                )
        julia = {procs: _median(samples[procs]) for procs in (1, 2)}
        proc = {procs: _median(psamples[procs])["per_s"] for procs in (1, 2)}
        for procs in (1, 2):
            f = julia[procs]
            print(
                f"julia worker x{procs}: {f['sends_per_s']:,.0f} sends/s, due→sent p50"
                f" {f['p50_ms']:,.0f} ms, p99 {f['p99_ms']:,.0f} ms,"
                f" {f['cpu_ms_per_send']:.3f} ms CPU per send (median of {runs})"
            )
        for procs in (1, 2):
            print(f"procrastinate worker x{procs}: {proc[procs]:,.0f} jobs/s (same HTTP call)")
    finally:
        sb.terminate()
        sb.wait(10)
        drop_db(server, ours)
        drop_db(server, theirs)
    ratio1 = julia[1]["sends_per_s"] / proc[1]
    ratio2 = julia[2]["sends_per_s"] / proc[2]
    print(f"ratio vs procrastinate: {ratio1:.2f}x (1 process), {ratio2:.2f}x (2 processes)")
    return {
        "messages": n,
        "concurrency": concurrency,
        "enqueue_per_s": round(enqueue),
        "sends_per_s_1proc": round(julia[1]["sends_per_s"]),
        "sends_per_s_2proc": round(julia[2]["sends_per_s"]),
        "p50_ms_1proc": round(julia[1]["p50_ms"]),
        "p99_ms_1proc": round(julia[1]["p99_ms"]),
        "p50_ms_2proc": round(julia[2]["p50_ms"]),
        "p99_ms_2proc": round(julia[2]["p99_ms"]),
        "procrastinate_per_s": round(proc[2]),
        "procrastinate_per_s_1proc": round(proc[1]),
        "procrastinate_per_s_2proc": round(proc[2]),
        "ratio_vs_procrastinate": round(ratio2, 2),
        "ratio_vs_procrastinate_1proc": round(ratio1, 2),
        "cpu_ms_per_send_1proc": round(julia[1]["cpu_ms_per_send"], 3),
        "cpu_ms_per_send_2proc": round(julia[2]["cpu_ms_per_send"], 3),
        "runs": runs,
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--procrastinate-worker":
        procrastinate_worker(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    # At zero latency a few sends in flight keep a worker busy; more only add
    # connection-pool overhead in httpx (production keeps JULIA_WORKER_CONCURRENCY=20).
    parser.add_argument("--concurrency", type=int, default=8)
    # INFO adds one JSON line per send (fila.sent, with its trace id) to the workers' cost.
    parser.add_argument("--log-level", default="WARNING", help="The workers' JULIA_LOG_LEVEL.")
    parser.add_argument("--runs", type=int, default=3, help="Figures are medians of these.")
    args = parser.parse_args()
    figures = asyncio.run(amain(args.messages, args.concurrency, args.log_level, args.runs))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
