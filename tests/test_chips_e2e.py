"""The incident again, with real processes: the sandbox gateway, ``julia chips add`` and a
``julia worker``, on the wall clock. The restriction lands while the worker is sending."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import httpx
import pytest

from julia.app import App
from julia.fila import queue
from julia.fila.queue import NewMessage
from julia.settings import Settings

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


@pytest.fixture
def gateway(env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    with (tmp_path / "sandbox.log").open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "julia_cli", "sandbox", "gateway", "--port", str(port)],
            env=env, stdout=out, stderr=out,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            with suppress(httpx.HTTPError):
                if httpx.get(f"{url}/_sandbox/messages", timeout=1).status_code == 200:
                    break
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


async def _sent(url: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as http:
        result: list[dict[str, Any]] = (await http.get(f"{url}/_sandbox/messages")).json()
    return result


async def test_incident_with_real_processes(
    settings: Settings, env: dict[str, str], gateway: str, tmp_path: Path
) -> None:
    wenv = env | {
        "JULIA_EVOLUTION_URL": gateway,
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
        await http.post(f"{gateway}/_sandbox/faults", json={"latency_ms": 20})
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
            while len(await _sent(gateway)) < 10:
                assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-2000:]
                assert loop.time() < deadline
                await asyncio.sleep(0.05)
            async with httpx.AsyncClient() as http:  # WhatsApp restricts chip-85 now
                await http.post(
                    f"{gateway}/_sandbox/faults",
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

        seen = await _sent(gateway)
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
