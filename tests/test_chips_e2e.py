"""The incident again, with real processes: the sandbox gateway, ``julia chips add`` and a
``julia worker``, on the wall clock. The restriction lands while the worker is sending."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from julia.core.app import App
from julia.fila import queue
from julia.fila.queue import NewMessage
from julia.settings import Settings

pytestmark = pytest.mark.slow


def _julia(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "julia_cli", *args], env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip


def _spawn(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.Popen[bytes]:
    with (tmp_path / "worker.log").open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "julia_cli", *args], env=env, stdout=out, stderr=out
        )


async def _sent(url: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as http:
        result: list[dict[str, Any]] = (await http.get(f"{url}/_sandbox/messages")).json()
    return result


async def test_incident_with_real_processes(
    settings: Settings, env: dict[str, str], sandbox_process: str, tmp_path: Path
) -> None:
    wenv = env | {
        "JULIA_EVOLUTION_URL": sandbox_process,
        "JULIA_RATE_LIMITS_ENABLED": "false",  # the wall clock may be outside business hours
        "JULIA_WORKER_BATCH_SIZE": "5",
        "JULIA_WORKER_CONCURRENCY": "5",
        "JULIA_LOG_LEVEL": "WARNING",
    }
    for i, (name, trust) in enumerate([("chip-85", 85), ("chip-75", 75), ("chip-70a", 70),
                                       ("chip-70b", 70)]):  # fmt: skip
        r = _julia(["chips", "add", "--instance", name, "--telefone", f"+55119000000{i:02d}",
                    "--provider", "evolution", "--trust", str(trust), "--status", "active"],
                   wenv)  # fmt: skip
        assert r.returncode == 0, r.stderr
    async with httpx.AsyncClient() as http:
        await http.post(f"{sandbox_process}/_sandbox/faults", json={"latency_ms": 20})
    n = 60
    async with App.open(settings) as app:
        ids = (
            await queue.enqueue_many(
                app, [NewMessage(f"prospeccao {i}", telefone=f"+55119888{i:05d}",
                                 tipo="prospeccao") for i in range(n)],
            )
        ).ids  # fmt: skip
        worker = _spawn(["worker", "--consumer", "fila", "--name", "w"], wenv, tmp_path)
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 120
            while len(await _sent(sandbox_process)) < 10:
                assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-2000:]
                assert loop.time() < deadline
                await asyncio.sleep(0.05)
            async with httpx.AsyncClient() as http:  # WhatsApp restricts chip-85 now
                await http.post(
                    f"{sandbox_process}/_sandbox/faults",
                    json={"instance": "chip-85", "status": 403, "latency_ms": 20},
                )
            while (await queue.stats(app))["counts"]["enviada"] < n:
                assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-2000:]
                assert loop.time() < deadline, await queue.stats(app)
                await asyncio.sleep(0.1)
        finally:
            worker.terminate()
            await asyncio.to_thread(worker.wait, 60)
        assert worker.returncode == 0, (tmp_path / "worker.log").read_text()[-2000:]

        seen = await _sent(sandbox_process)
        texts = [m["text"] for m in seen]
        assert len(texts) == n and set(texts) == {f"prospeccao {i}" for i in range(n)}
        by_instance = Counter(m["instance"] for m in seen)
        assert 10 <= by_instance["chip-85"] < n
        assert by_instance["chip-75"] + by_instance["chip-70a"] + by_instance["chip-70b"] > 0
        for mid in ids:
            m = await queue.get(app, mid)
            assert m.status == "enviada" and m.instancia in by_instance
        async with app.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) FILTER (WHERE emergency) AS emergency,"
                " count(*) FILTER (WHERE resultado = 'GATEWAY_403') AS refused"
                " FROM chip_selection_log"
            )
            row = await cur.fetchone()
        assert row is not None and row["emergency"] > 0 and row["refused"] >= 1

    listed = _julia(["chips", "list", "--json"], wenv)
    assert listed.returncode == 0, listed.stderr
    chips = {c["instance"]: c for c in json.loads(listed.stdout)}
    assert chips["chip-85"]["cooldown_until"] is not None
    assert {chips[n]["cooldown_until"] for n in ("chip-75", "chip-70a", "chip-70b")} == {None}
    assert {chips[n]["circuit"] for n in ("chip-75", "chip-70a", "chip-70b")} == {"closed"}
