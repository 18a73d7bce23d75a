"""Two ``julia scheduler`` processes on one database and Redis: each tick runs once,
and both stop cleanly (exit 0) on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from julia.settings import Settings


def _ticks(database_url: str) -> list[tuple[object, str]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT tick, runner FROM job_executions WHERE job = 'watchdog' ORDER BY tick"
        ).fetchall()
    return [(r[0], r[1]) for r in rows]


@pytest.mark.slow
def test_two_scheduler_processes_run_each_tick_once(
    env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    run_env = env | {"JULIA_WATCHDOG_INTERVAL_S": "1", "JULIA_SCHEDULER_METRICS_PORT": "0"}
    julia = str(Path(sys.executable).with_name("julia"))
    procs = [
        subprocess.Popen(
            [julia, "scheduler", "--only", "watchdog"],
            env=run_env,
            stdout=subprocess.PIPE,
            stderr=open(tmp_path / f"scheduler{i}.log", "w"),  # noqa: SIM115
        )
        for i in range(2)
    ]
    database_url = Settings.secret(settings.database_url) or ""
    try:
        deadline = time.monotonic() + 60
        while len(_ticks(database_url)) < 4 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        codes = [p.wait(timeout=30) for p in procs]
    logs = [(tmp_path / f"scheduler{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], logs
    assert all("scheduler.stopped" in log for log in logs)
    rows = _ticks(database_url)
    ticks = [t for t, _ in rows]
    assert len(ticks) >= 4 and len(ticks) == len(set(ticks))
    pids = {runner.rsplit("-", 1)[1] for _, runner in rows}
    assert pids <= {str(p.pid) for p in procs}
    assert os.environ.get("JULIA_DATABASE_URL") is None  # the test's env only went to children
