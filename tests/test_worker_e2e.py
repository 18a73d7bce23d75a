"""End to end: real ``julia worker`` processes against a real sandbox gateway process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from julia.core.app import App
from julia.fila import queue
from julia.fila.queue import NewMessage
from julia.ops import heartbeat
from julia.sandbox.gateway import control as sandbox
from julia.settings import Settings

pytestmark = pytest.mark.slow


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "julia_cli", *args], env=env, stdout=out, stderr=out
        )


@pytest.fixture
def worker_env(env: dict[str, str], sandbox_process: str) -> dict[str, str]:
    return env | {
        "JULIA_EVOLUTION_URL": sandbox_process,
        "JULIA_RATE_LIMITS_ENABLED": "false",
        "JULIA_LOG_LEVEL": "WARNING",
        "JULIA_WORKER_GRACE_S": "20",
    }


@asynccontextmanager
async def real_time_app(settings: Settings) -> AsyncIterator[App]:
    async with App.open(settings) as app:  # the workers run on the wall clock too
        yield app


async def counts(app: App) -> dict[str, int]:
    return dict((await queue.stats(app))["counts"])


async def wait_for(app: App, done: Any, what: str, procs: list[Any], limit_s: float = 180) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while True:
        c = await counts(app)
        if done(c):
            return
        dead = [p.returncode for p in procs if p.poll() is not None]
        assert not dead, f"a worker died ({dead}) while waiting for {what}: {c}"
        assert loop.time() < deadline, f"timed out waiting for {what}: {c}"
        await asyncio.sleep(0.2)


async def fault(url: str, **body: Any) -> None:
    async with httpx.AsyncClient() as http:
        (await http.post(f"{url}/_sandbox/faults", json=body)).raise_for_status()


async def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    proc.send_signal(sig)
    return await asyncio.to_thread(proc.wait, 60)


async def test_two_worker_processes_drain_ten_thousand_each_sent_exactly_once(
    settings: Settings, worker_env: dict[str, str], sandbox_process: str, tmp_path: Path
) -> None:
    n = 10_000
    async with real_time_app(settings) as app:
        await queue.enqueue_many(
            app, [NewMessage(f"msg {i}", telefone=f"+55119{i:08d}") for i in range(n)]
        )
        workers = [
            spawn(
                ["worker", "--consumer", "fila", "--name", f"w{i}"],
                worker_env,
                tmp_path / f"w{i}.log",
            )
            for i in range(2)
        ]
        try:
            await wait_for(app, lambda c: c["enviada"] == n, "every message sent", workers)
        finally:
            codes = [await stop(w) for w in workers]
        assert codes == [0, 0], [(tmp_path / f"w{i}.log").read_text()[-2000:] for i in range(2)]
        seen = sandbox(sandbox_process, "/_sandbox/messages")
        texts = [m["text"] for m in seen]
        assert len(texts) == n and set(texts) == {f"msg {i}" for i in range(n)}
        assert await counts(app) == {**dict.fromkeys(await counts(app), 0), "enviada": n}
        async with app.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT worker, count(*) AS n FROM fila_eventos WHERE para = 'enviada' GROUP BY 1"
            )
            by_worker = {r["worker"]: r["n"] for r in await cur.fetchall()}
            cur = await conn.execute(
                "SELECT count(DISTINCT provider_message_id) AS n FROM fila_mensagens"
            )
            assert (await cur.fetchone()) == {"n": n}
        assert set(by_worker) == {"w0", "w1"} and sum(by_worker.values()) == n


async def test_sigkill_mid_run_then_another_worker_finishes_nothing_lost_nothing_twice(
    settings: Settings, worker_env: dict[str, str], sandbox_process: str, tmp_path: Path
) -> None:
    n = 3000
    env = worker_env | {
        "JULIA_FILA_LEASE_S": "3",
        "JULIA_HTTP_READ_TIMEOUT_S": "1",  # the lease must outlast a send (2 s deadline)
        "JULIA_WORKER_RESCUE_INTERVAL_S": "1",
        "JULIA_WORKER_CONCURRENCY": "10",
        "JULIA_WORKER_BATCH_SIZE": "50",
    }
    # a little latency keeps sends in flight when the kill lands
    await fault(sandbox_process, latency_ms=15)
    async with real_time_app(settings) as app:
        await queue.enqueue_many(
            app, [NewMessage(f"kill {i}", telefone=f"+55219{i:08d}") for i in range(n)]
        )
        victim = spawn(
            ["worker", "--consumer", "fila", "--name", "victim"], env, tmp_path / "victim.log"
        )
        await wait_for(app, lambda c: c["enviada"] >= 300, "the run to be under way", [victim])
        victim.send_signal(signal.SIGKILL)
        await asyncio.to_thread(victim.wait, 30)
        at_kill = await counts(app)
        assert at_kill["processando"] > 0, at_kill  # it died holding messages
        rescuer = spawn(
            ["worker", "--consumer", "fila", "--name", "rescuer"], env, tmp_path / "rescuer.log"
        )
        try:
            await wait_for(
                app,
                lambda c: c["pendente"] == c["processando"] == c["incerta"] == 0,
                "every message to settle",
                [rescuer],
            )
        finally:
            assert await stop(rescuer) == 0
        final = await counts(app)
        assert final["enviada"] == n, final
        seen = sandbox(sandbox_process, "/_sandbox/messages")
        texts = [m["text"] for m in seen]
        assert len(texts) == len(set(texts)), "a message reached the gateway twice"
        assert set(texts) == {f"kill {i}" for i in range(n)}, "a message is missing"
        async with app.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT outcome, count(*) AS n FROM fila_eventos WHERE worker = 'victim'"
                " AND de = 'processando' AND para IN ('pendente', 'incerta') GROUP BY 1"
            )
            rescued = {r["outcome"]: r["n"] for r in await cur.fetchall()}
        assert sum(rescued.values()) == at_kill["processando"]


async def test_sigterm_finishes_in_flight_sends_releases_the_rest_and_exits_0(
    settings: Settings, worker_env: dict[str, str], sandbox_process: str, tmp_path: Path
) -> None:
    await fault(sandbox_process, latency_ms=150)
    env = worker_env | {"JULIA_WORKER_CONCURRENCY": "4", "JULIA_WORKER_BATCH_SIZE": "8",
                        "JULIA_WORKER_HEARTBEAT_S": "0.5"}  # fmt: skip
    async with real_time_app(settings) as app:
        await queue.enqueue_many(
            app, [NewMessage(f"term {i}", telefone=f"+55319{i:08d}") for i in range(60)]
        )
        proc = spawn(
            ["worker", "--consumer", "fila", "--name", "graceful"], env, tmp_path / "graceful.log"
        )
        await wait_for(app, lambda c: c["enviada"] >= 4, "some sends", [proc])

        [live] = await heartbeat.workers_status(app)
        assert (live.id, live.state, live.redis_beat) == ("graceful", "alive", True)
        assert live.consumers == ["fila"]  # --consumer fila
        code = await stop(proc)
        assert code == 0, (tmp_path / "graceful.log").read_text()[-2000:]
        c = await counts(app)
        assert c["processando"] == 0 and c["incerta"] == 0
        assert c["enviada"] + c["pendente"] == 60 and c["pendente"] > 0
        async with app.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT DISTINCT tentativas FROM fila_mensagens WHERE status = 'pendente'"
            )
            assert [r["tentativas"] for r in await cur.fetchall()] == [0]  # nothing spent
        texts = [m["text"] for m in sandbox(sandbox_process, "/_sandbox/messages")]
        assert len(texts) == len(set(texts)) == c["enviada"]
        assert await heartbeat.workers_status(app) == []
        [gone] = await heartbeat.workers_status(app, include_stopped=True)
        assert gone.state == "stopped" and gone.redis_beat is False
        assert os.environ.get("JULIA_DATABASE_URL") is None  # nothing leaked into the tests


async def test_an_idle_worker_picks_a_scheduled_message_when_it_falls_due(
    settings: Settings, worker_env: dict[str, str], sandbox_process: str, tmp_path: Path
) -> None:
    async with real_time_app(settings) as app:
        proc = spawn(["worker", "--consumer", "fila", "--name", "idle"], worker_env,
                     tmp_path / "idle.log")  # fmt: skip
        try:
            for _ in range(100):  # wait (bounded) until it has registered
                if await heartbeat.workers_status(app):
                    break
                await asyncio.sleep(0.1)
            due = app.clock.now() + timedelta(seconds=1.5)
            await queue.enqueue(
                app, NewMessage("na hora", telefone="+5511999990009", agendar_para=due)
            )
            # the NOTIFY came at enqueue time, long before the due time: polling finds it
            await wait_for(app, lambda c: c["enviada"] == 1, "the scheduled send", [proc], 30)
        finally:
            assert await stop(proc) == 0
        [m] = await queue.list_messages(app, status="enviada")
        assert m.enviada_em is not None and m.enviada_em >= due
