"""The daily retention job: each window a setting, old data gone, recent data kept."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb

from julia.core.app import App
from julia.core.clock import FrozenClock
from julia.fila import queue
from julia.ops import retention
from julia.ops.jobs import runner


async def _one(app: App, sql: str, *args: Any) -> Any:
    async with app.pool.connection() as conn:
        cur = await conn.execute(sql, args or None)
        row = await cur.fetchone()
    assert row is not None
    return next(iter(row.values()))


async def _inbox_row(app: App, pid: str, status: str, at: datetime) -> int:
    return int(await _one(
        app,
        "INSERT INTO mensagens_recebidas (provider, provider_message_id, evento, telefone,"
        " conversa_key, tipo, texto, received_at, payload, status)"
        " VALUES ('evolution', %s, 'messages.upsert', '+5511999990001', '+5511999990001',"
        " 'texto', 'oi', %s, %s, %s) RETURNING id",
        pid, at, Jsonb({"apikey": "k", "data": {"n": 1}}), status,
    ))  # fmt: skip


async def test_retention_prunes_each_kind_by_its_window(app: App, clock: FrozenClock) -> None:
    clock.set(datetime(2026, 12, 1, 6, 0, tzinfo=UTC))
    now = clock.now()
    old, recent = now - timedelta(days=40), now - timedelta(days=2)
    old_done = await _inbox_row(app, "A", "processada", old)
    old_parked = await _inbox_row(app, "B", "erro", old)  # may still be replayed: kept
    fresh = await _inbox_row(app, "C", "processada", recent)

    sent_old = (await queue.enqueue(app, queue.NewMessage(telefone="11999990001", texto="a"))).id
    sent_new = (await queue.enqueue(app, queue.NewMessage(telefone="11999990002", texto="b"))).id
    pending_old = (await queue.enqueue(app, queue.NewMessage(telefone="11999990003", texto="c"))).id
    async with app.pool.connection() as conn:
        await conn.execute(
            "UPDATE fila_mensagens SET status = 'enviada', enviada_em = %s WHERE id = ANY(%s)",
            (now, [sent_old, sent_new]),
        )
        # updated_at is what ages a finished row (set after the trigger's event row)
        await conn.execute("UPDATE fila_mensagens SET updated_at = %s WHERE id IN (%s, %s)",
                           (now - timedelta(days=120), sent_old, pending_old))  # fmt: skip
        await conn.execute(
            "INSERT INTO job_executions (job, trigger, status, started_at, finished_at, runner)"
            " VALUES ('x', 'manual', 'ok', %(a)s, %(a)s, 't'), ('x', 'manual', 'ok', %(b)s, %(b)s,"
            " 't'), ('lonely', 'manual', 'ok', %(a)s, %(a)s, 't')",
            {"a": now - timedelta(days=200), "b": now - timedelta(days=199)},
        )
        await conn.execute(
            "INSERT INTO chip_selection_log (tipo, candidates, motivo, threshold, at)"
            " VALUES ('resposta', '[]', 'm', 40, %s), ('resposta', '[]', 'm', 40, %s)",
            (now - timedelta(days=31), now - timedelta(days=1)),
        )
        await conn.execute("SELECT julia_create_interacoes_partitions('2024-01-01', 3)")

    ran = await runner.run_job(app, "retention", manual=True)
    assert ran.status == "ok", ran.error
    details = ran.details if isinstance(ran.details, dict) else json.loads(ran.details)

    payload = "SELECT payload FROM mensagens_recebidas WHERE id = %s"
    assert await _one(app, payload, old_done) == {}
    assert await _one(app, payload, old_parked) != {} and await _one(app, payload, fresh) != {}
    assert await _one(app, "SELECT texto FROM mensagens_recebidas WHERE id = %s", old_done) == "oi"
    left = "SELECT array_agg(id ORDER BY id) FROM fila_mensagens"
    assert await _one(app, left) == [sent_new, pending_old]  # pending is never pruned
    events = "SELECT count(*) FROM fila_eventos WHERE mensagem_id = %s"
    assert await _one(app, events, sent_old) == 0 and await _one(app, events, sent_new) == 1
    assert await _one(app, "SELECT count(*) FROM chip_selection_log") == 1
    runs = "SELECT array_agg(job ORDER BY id) FROM job_executions WHERE job <> 'retention'"
    assert await _one(app, runs) == ["x", "lonely"]  # each job's last run stays
    assert set(details["partitions_detached"]) >= {
        "interacoes_2024_01", "interacoes_2024_02", "interacoes_2024_03",
    }  # fmt: skip
    attached = (
        "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE c.relname = %s"
    )
    assert await _one(app, attached, "interacoes_2024_01") == 0
    assert await _one(app, "SELECT to_regclass('interacoes_2024_01') IS NOT NULL")  # kept
    this_month = f"interacoes_{now:%Y_%m}"
    assert await _one(app, attached, this_month) == 1
    assert ran.items == details["fila_deleted"] + details["selection_log_deleted"] + (
        details["job_executions_deleted"] + len(details["partitions_detached"])
        + sum(details["payloads_emptied"].values())
    )  # fmt: skip


async def test_zero_keeps_everything_and_drop_drops(app: App, clock: FrozenClock) -> None:
    clock.set(datetime(2026, 12, 1, 6, 0, tzinfo=UTC))
    s = app.settings
    s.retention_webhook_payload_days = s.retention_fila_days = 0
    s.retention_selection_log_days = s.retention_job_executions_days = 0
    s.retention_interacoes_months, s.retention_interacoes_drop = 1, True
    row = await _inbox_row(app, "A", "processada", clock.now() - timedelta(days=400))
    async with app.pool.connection() as conn:
        await conn.execute("SELECT julia_create_interacoes_partitions('2025-01-01', 1)")
    report = await retention.run(app)
    assert report.payloads_emptied == {} and report.fila_deleted == 0
    assert "interacoes_2025_01" in report.partitions_dropped
    assert await _one(app, "SELECT to_regclass('interacoes_2025_01') IS NULL")
    assert await _one(app, "SELECT payload FROM mensagens_recebidas WHERE id = %s", row) != {}
