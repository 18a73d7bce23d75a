"""Two real processes share one breaker through Redis: they fail at the same time, the
breaker opens once (one transition row), and both then see it open."""

from __future__ import annotations

import json
import subprocess
import sys

import psycopg
import pytest

WORKER = r"""
import asyncio, json, sys
import httpx
from julia.core.app import App
from julia.core.errors import CircuitOpen
from julia.resilience.breaker import breakers
from julia.settings import Settings

async def main() -> None:
    async with App.open(Settings()) as app:
        b = breakers(app).get("evolution")
        print("ready", flush=True)
        sys.stdin.readline()  # both start failing together
        outcomes = []
        for _ in range(int(sys.argv[1])):
            try:
                async with b.guard():
                    raise httpx.ConnectError("gateway down")
            except CircuitOpen as exc:
                outcomes.append(["refused", exc.retry_at.isoformat()])
            except httpx.ConnectError:
                outcomes.append(["failed", None])
        st = await b.status()
        print(json.dumps({"outcomes": outcomes, "state": st.state, "backend": st.backend}))

asyncio.run(main())
"""


@pytest.mark.slow
def test_two_processes_share_one_breaker(env: dict[str, str], database_url: str) -> None:
    env = {**env, "JULIA_BREAKER_FAILURE_THRESHOLD": "5", "JULIA_BREAKER_FAILURE_RATE": "0"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, "8"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        results = []
        for p in procs:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    failed = sum(o[0] == "failed" for r in results for o in r["outcomes"])
    refused = [o[1] for r in results for o in r["outcomes"] if o[0] == "refused"]
    # One breaker for both: the fifth failure opened it, and at most the one call the
    # other process had in flight at that moment got through after; every later call
    # was refused, with the same retry time in both processes.
    assert failed in (5, 6) and len(refused) == 16 - failed
    assert len(set(refused)) == 1
    assert [(r["state"], r["backend"]) for r in results] == [("open", "redis")] * 2
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT from_state, to_state, consecutive_failures FROM circuit_transitions"
            " WHERE name = 'evolution'"
        ).fetchall()
    assert rows == [("closed", "open", 5)]
