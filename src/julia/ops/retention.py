"""Retention: what Júlia stops keeping, each window a setting (``JULIA_RETENTION_*``).

Run daily by the ``retention`` job. Each step deletes (or empties) in batches of
:data:`BATCH` rows, one short transaction each, so the job never holds a long lock
on a table the worker and the shim write:

- raw webhook payloads (``mensagens_recebidas``, ``mensagens_acks``,
  ``gateway_conexao_eventos``) are emptied to ``{}``: the parsed row stays;
- finished queue rows (enviada, cancelada, expirada, bloqueada) are deleted with their
  ``fila_eventos`` (the DLQ is the operator's, ``julia fila dlq purge``);
- ``interacoes`` monthly partitions older than the window are detached (kept as plain
  tables to archive), or dropped when ``JULIA_RETENTION_INTERACOES_DROP`` is set;
- ``chip_selection_log`` rows and ``job_executions`` (each job's last run stays: the
  late-job check reads it) are deleted.

A window of 0 keeps that data forever.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from julia.core.app import App
from julia.core.logs import get_logger

log = get_logger(__name__)

BATCH = 5000
TERMINAL = ("enviada", "cancelada", "expirada", "bloqueada")
_PARTITION = re.compile(r"^interacoes_(\d{4})_(\d{2})$")


@dataclass
class RetentionReport:
    payloads_emptied: dict[str, int] = field(default_factory=dict)
    fila_deleted: int = 0
    partitions_detached: list[str] = field(default_factory=list)
    partitions_dropped: list[str] = field(default_factory=list)
    selection_log_deleted: int = 0
    job_executions_deleted: int = 0

    @property
    def total(self) -> int:
        return (
            sum(self.payloads_emptied.values()) + self.fila_deleted
            + len(self.partitions_detached) + self.selection_log_deleted
            + self.job_executions_deleted
        )  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def _batched(app: App, sql: str, params: dict[str, Any]) -> int:
    """Run ``sql`` (which handles at most ``%(batch)s`` rows) until it touches none."""
    total = 0
    while True:
        async with app.pool.connection() as conn:
            cur = await conn.execute(sql, params | {"batch": BATCH})
            n = cur.rowcount or 0
        total += n
        if n < BATCH:
            return total


_PAYLOADS = {
    # table: the time column of its age
    "mensagens_recebidas": "received_at",
    "mensagens_acks": "at",
    "gateway_conexao_eventos": "at",
}


async def prune_payloads(app: App, now: datetime) -> dict[str, int]:
    days = app.settings.retention_webhook_payload_days
    if days == 0:
        return {}
    cutoff = now - timedelta(days=days)
    out = {}
    for table, at in _PAYLOADS.items():
        # Only finished inbox rows: a pending or parked message may still be replayed.
        extra = (
            " AND status IN ('processada', 'ignorada')" if table == "mensagens_recebidas" else ""
        )
        out[table] = await _batched(
            app,
            f"UPDATE {table} SET payload = '{{}}'::jsonb WHERE id IN (SELECT id FROM {table}"
            f" WHERE payload <> '{{}}'::jsonb AND {at} < %(cutoff)s{extra} LIMIT %(batch)s)",
            {"cutoff": cutoff},
        )
    return out


async def prune_fila(app: App, now: datetime) -> int:
    days = app.settings.retention_fila_days
    if days == 0:
        return 0
    # fila_eventos go with their message (ON DELETE CASCADE).
    return await _batched(
        app,
        "DELETE FROM fila_mensagens WHERE id IN (SELECT id FROM fila_mensagens"
        " WHERE status = ANY(%(terminal)s) AND updated_at < %(cutoff)s LIMIT %(batch)s)",
        {"terminal": list(TERMINAL), "cutoff": now - timedelta(days=days)},
    )


def _month_start(d: date, months_back: int) -> date:
    index = d.year * 12 + d.month - 1 - months_back
    return date(index // 12, index % 12 + 1, 1)


async def detach_partitions(app: App, now: datetime) -> tuple[list[str], list[str]]:
    """Detach (and optionally drop) monthly partitions wholly older than the window."""
    months = app.settings.retention_interacoes_months
    if months == 0:
        return [], []
    cutoff = _month_start(now.date(), months)  # partitions ending on or before it go
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'interacoes'"
            " ORDER BY c.relname"
        )
        names = [r["relname"] for r in await cur.fetchall()]
    detached, dropped = [], []
    for name in names:
        m = _PARTITION.match(name)
        if m is None:
            continue  # interacoes_default and anything not monthly stay
        start = date(int(m[1]), int(m[2]), 1)
        if _month_start(start, -1) > cutoff:
            continue
        async with app.pool.connection() as conn:
            await conn.execute(f'ALTER TABLE interacoes DETACH PARTITION "{name}"')
            detached.append(name)
            if app.settings.retention_interacoes_drop:
                await conn.execute(f'DROP TABLE "{name}"')
                dropped.append(name)
    return detached, dropped


async def prune_selection_log(app: App, now: datetime) -> int:
    days = app.settings.retention_selection_log_days
    if days == 0:
        return 0
    return await _batched(
        app,
        "DELETE FROM chip_selection_log WHERE id IN (SELECT id FROM chip_selection_log"
        " WHERE at < %(cutoff)s LIMIT %(batch)s)",
        {"cutoff": now - timedelta(days=days)},
    )


async def prune_job_executions(app: App, now: datetime) -> int:
    days = app.settings.retention_job_executions_days
    if days == 0:
        return 0
    return await _batched(
        app,
        "DELETE FROM job_executions WHERE id IN (SELECT id FROM job_executions e"
        " WHERE started_at < %(cutoff)s AND status <> 'running'"
        " AND id <> (SELECT max(id) FROM job_executions l WHERE l.job = e.job)"
        " LIMIT %(batch)s)",
        {"cutoff": now - timedelta(days=days)},
    )


async def run(app: App) -> RetentionReport:
    """Every retention step, in order; returns what each removed."""
    now = app.clock.now()
    report = RetentionReport()
    report.payloads_emptied = await prune_payloads(app, now)
    report.fila_deleted = await prune_fila(app, now)
    report.partitions_detached, report.partitions_dropped = await detach_partitions(app, now)
    report.selection_log_deleted = await prune_selection_log(app, now)
    report.job_executions_deleted = await prune_job_executions(app, now)
    log.info("retention.done", **report.as_dict())
    return report
