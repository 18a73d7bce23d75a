"""``julia demo --headless``: the whole system in processes, a short story, the report.

One run (about a minute): every component its own process, a campaign to 200
doctors on the incident's four chips, simulated doctors answering through the
sandbox gateway's webhooks, chip-85 restricted (403) mid-campaign. The run exits 0
only when its invariants hold, its last line is the JSON report, and nothing it
started outlives it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import psycopg

from julia.core.app import App
from julia.demo import report, sample
from julia.domain import medicos
from julia.fila import queue


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_headless_demo_holds_its_invariants_and_leaves_nothing_behind(
    pg_server_url: str, redis_server_url: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JULIA_")}
    env.update(
        {
            "JULIA_DATABASE_URL": pg_server_url,
            "JULIA_REDIS_URL": redis_server_url,
            "JULIA_HOME": str(tmp_path / "home"),
        }
    )
    done = subprocess.run(
        [sys.executable, "-m", "julia_cli", "demo", "--headless", "--duration", "24"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-2000:]
    data = json.loads(lines[-1])
    try:
        for key in ("sent", "duplicates", "lost", "reserved", "handoffs", "opt_outs", "alerts"):
            assert key in data, key
        assert data["duplicates"] == 0 and data["lost"] == 0 and data["not_terminal"] == 0
        assert data["sent"] >= 200  # every doctor got the campaign, exactly once
        assert data["handoffs"] >= 1 and data["opt_outs"] >= 1
        assert data["opt_out_violations"] == 0
        # the incident: chip-85 cooled down with its breaker open, the others carried on
        incident = data["incident"]
        assert incident["cooldown_until"]
        assert incident["emergency_selections"] > 0 and incident["sent_by_others_after"] > 0
        assert set(data["by_chip"]) == {name for name, _ in sample.CHIPS}
        assert data["alerts"] >= 1 and any(k.startswith("chip.") for k in data["alerts_by_kind"])
        assert all(v != "FAILED" for v in data["checks"].values()) and data["ok"] is True
        assert "Tudo bem" not in json.dumps(data)  # doctors' and Júlia's texts stay out

        # every process it started is gone
        (pids_file,) = (tmp_path / "home" / "demo").glob("*/logs/pids.json")
        pids = json.loads(pids_file.read_text())
        assert {"gateway", "slack", "shim", "worker", "scheduler"} <= set(pids)
        assert [n for n, pid in pids.items() if _alive(pid)] == []
        # the report reads the database the run left: a second look agrees
        with psycopg.connect(_db(pg_server_url, data["database"])) as conn:
            enviadas = conn.execute(
                "SELECT count(*) FROM fila_mensagens WHERE status = 'enviada'"
            ).fetchone()
        assert enviadas is not None and enviadas[0] <= data["sent"]
    finally:
        _drop(pg_server_url, data["database"])


def test_a_stopped_demo_stops_every_process_it_started(
    pg_server_url: str, redis_server_url: str, tmp_path: Path
) -> None:
    """SIGTERM (as Ctrl-C) mid-run: the demo stops its children and exits 130."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JULIA_")}
    env.update({"JULIA_DATABASE_URL": pg_server_url, "JULIA_REDIS_URL": redis_server_url,
                "JULIA_HOME": str(tmp_path / "home")})  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "julia_cli", "demo", "--headless", "--duration", "60"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    pids: dict[str, int] = {}
    deadline = time.monotonic() + 120
    while "scheduler" not in pids and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        for f in (tmp_path / "home" / "demo").glob("*/logs/pids.json"):
            with contextlib.suppress(ValueError):
                pids = json.loads(f.read_text())
    assert "scheduler" in pids, proc.stdout.read() if proc.stdout else ""
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out[-2000:]
    assert "every process stopped" in out
    assert [n for n, pid in pids.items() if _alive(pid)] == []
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        (name,) = {
            f.parent.parent.name for f in (tmp_path / "home" / "demo").glob("*/logs/pids.json")
        }
        conn.execute(f'DROP DATABASE IF EXISTS "julia_demo_{name}" WITH (FORCE)')


def _name(database: str) -> str:
    name = database.split("?")[0].rsplit("/", 1)[-1]
    assert name.startswith("julia_demo_")
    return name


def _db(server: str, database: str) -> str:
    from tests.conftest import db_url

    return db_url(server, _name(database))


def _drop(server: str, database: str) -> None:
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{_name(database)}" WITH (FORCE)')


async def test_the_report_counts_duplicates_losses_and_opt_out_violations(app: App) -> None:
    """The invariants can fail: the same text twice to a doctor is a duplicate; a message
    the queue calls sent that the gateway never got is lost; so is a doctor's webhook
    that was never stored; a message after an opt-out is a violation."""
    a = await queue.enqueue(
        app, queue.NewMessage("Oi!", telefone="+5511987650001", tipo="campanha")
    )
    b = await queue.enqueue(
        app, queue.NewMessage("Olá", telefone="+5511987650002", tipo="campanha")
    )
    async with app.pool.connection() as conn:
        for mid, pid in ((a.id, "P1"), (b.id, "P2")):
            await conn.execute(
                "UPDATE fila_mensagens SET status = 'enviada',"
                " provider_message_id = %s WHERE id = %s",
                (pid, mid),
            )
        await conn.execute(
            "INSERT INTO medicos (nome, telefone) VALUES ('Ana Lima', '+5511987650003')"
        )
    await medicos.optout(app, "+5511987650003", motivo="teste")
    later = (app.clock.now() + timedelta(minutes=1)).isoformat()
    seen = [
        {
            "id": "P1",
            "instance": "chip-85",
            "number": "5511987650001",
            "text": "Oi!",
            "time": later,
            "status": "DELIVERY_ACK",
        },
        {
            "id": "X9",
            "instance": "chip-75",
            "number": "5511987650001",
            "text": "Oi!",
            "time": later,
            "status": "PENDING",
        },
        {
            "id": "X8",
            "instance": "chip-75",
            "number": "5511987650003",
            "text": "Vaga?",
            "time": later,
            "status": "PENDING",
        },
    ]  # P2 never reached the gateway; X9 and X8 were sent by nobody the queue knows
    posted = [{"id": "IN1", "number": "5511987650001"}]  # a webhook that was never stored
    rep = await report.build(
        app, seen, posted, incident_instance="chip-85", incident_at=None, require={}, look_next=[]
    )
    assert rep.duplicates == 1
    assert rep.lost == 1 + 2 + 1
    assert rep.opt_out_violations == 1
    assert rep.delivered == 1 and rep.replied == 1
    assert rep.checks["no duplicate"] == rep.checks["nothing lost"] == "FAILED"
    assert rep.ok is False
