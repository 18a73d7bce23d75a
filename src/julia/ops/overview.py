"""The whole system at a glance: what ``julia top`` draws and the metrics snapshot stores.

    view = await overview(app)        # queue, throughput, workers, chips, circuits,
                                      # recent alerts, handoffs waiting
    await take_snapshot(app)          # a metrics_snapshots row; prunes past 7 days

Each section is None when its capability is not installed yet, so the view works on
any installation.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from julia.core.app import App
from julia.core.redact import mask_phone
from julia.notify import alerts
from julia.ops import health
from julia.resilience import breaker

#: Minutes of per-minute throughput the view shows (the sparkline).
THROUGHPUT_MINUTES = 30


async def throughput(app: App, minutes: int = THROUGHPUT_MINUTES) -> list[int] | None:
    """Messages sent in each of the last ``minutes`` minutes, oldest first."""
    now = app.clock.now()
    start = now - timedelta(minutes=minutes)
    try:
        async with app.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT floor(extract(epoch FROM enviada_em - %(start)s) / 60)::int AS m,"
                " count(*) AS n FROM fila_mensagens"
                " WHERE enviada_em > %(start)s AND enviada_em <= %(now)s GROUP BY 1",
                {"start": start, "now": now},
            )
            per = {int(r["m"]): int(r["n"]) for r in await cur.fetchall()}
    except psycopg.errors.UndefinedTable:
        return None
    return [per.get(i, 0) for i in range(minutes)]


async def handoffs_waiting(app: App, limit: int = 10) -> dict[str, Any]:
    """Active conversations a human controls, oldest handoff first (with its status and
    reason; waiting since the handoff was opened)."""
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT c.id, m.telefone, m.nome, COALESCE(h.created_at, c.updated_at) AS since,"
            " h.id AS handoff_id, h.status AS handoff_status, h.reason FROM conversas c"
            " JOIN medicos m ON m.id = c.medico_id"
            " LEFT JOIN handoffs h ON h.conversa_id = c.id AND h.status <> 'resolvido'"
            " WHERE c.status = 'ativa' AND c.controlled_by = 'humano'"
            " ORDER BY since LIMIT %s",
            (limit,),
        )
        rows = list(await cur.fetchall())
        cur = await conn.execute(
            "SELECT count(*) AS n FROM conversas WHERE status = 'ativa'"
            " AND controlled_by = 'humano'"
        )
        total = await cur.fetchone()
    now = app.clock.now()
    return {
        "count": int(total["n"]) if total else 0,
        "items": [
            {"conversa_id": r["id"], "telefone": mask_phone(r["telefone"]), "nome": r["nome"],
             "waiting_min": round((now - r["since"]).total_seconds() / 60),
             "handoff_id": r["handoff_id"], "status": r["handoff_status"], "reason": r["reason"]}
            for r in rows
        ],
    }  # fmt: skip


async def _optional(fn: Any) -> Any:
    try:
        return await fn
    except (health.NotAvailable, psycopg.errors.UndefinedTable):
        return None


async def _recent_alerts(app: App, limit: int) -> list[dict[str, Any]]:
    try:
        return [a.as_dict() for a in await alerts.list_alerts(app, limit=limit)]
    except psycopg.errors.UndefinedTable:
        return []


async def overview(app: App, *, alert_limit: int = 8) -> dict[str, Any]:
    """Everything ``julia top`` shows, from Postgres (and Redis for circuits)."""

    try:
        circuits: dict[str, str] | None = {
            st.name: st.state for st in await breaker.status_all(app)
        }
    except Exception:
        circuits = None
    return {
        "at": app.clock.now(),
        "queue": await _optional(health.queue_stats(app)),
        "throughput": await throughput(app),
        "workers": await _optional(health.worker_rows(app)),
        "chips": await _optional(health.chip_rows(app)),
        "circuits": circuits,
        "alerts": await _recent_alerts(app, alert_limit),
        "handoffs": await _optional(handoffs_waiting(app)),
    }


async def take_snapshot(app: App) -> dict[str, Any]:
    """Store a picture of the system (counts only) and prune snapshots past retention."""
    view = await overview(app, alert_limit=1)
    queue = view["queue"] or {}
    chips = view["chips"] or []
    data = {
        "queue": queue.get("counts", {}),
        "oldest_pending_age_s": queue.get("oldest_pending_age_s"),
        "sent_last_hour": queue.get("sent_last_hour"),
        "errors_last_hour": queue.get("errors_last_hour"),
        "throughput_last_30min": sum(view["throughput"] or []),
        "workers_alive": sum(1 for w in view["workers"] or [] if w["state"] == "alive"),
        "chips": {
            "total": len(chips),
            "available": sum(1 for c in chips if c["available"]),
            "may_prospect": sum(1 for c in chips if c["may_prospect"]),
        },
        "circuits_open": sorted(
            n for n, s in (view["circuits"] or {}).items() if s in ("open", "forced_open")
        ),
        "handoffs_waiting": (view["handoffs"] or {}).get("count"),
    }
    now = app.clock.now()
    cutoff = now - timedelta(days=app.settings.metrics_snapshot_retention_days)
    async with app.pool.connection() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO metrics_snapshots (taken_at, data) VALUES (%s, %s)", (now, Jsonb(data))
        )
        cur = await conn.execute("DELETE FROM metrics_snapshots WHERE taken_at < %s", (cutoff,))
        pruned = cur.rowcount
    return {"data": data, "pruned": pruned}


async def snapshots(app: App, *, hours: float = 24) -> list[dict[str, Any]]:
    """Stored snapshots of the last ``hours``, oldest first."""
    since = app.clock.now() - timedelta(hours=hours)
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT taken_at, data FROM metrics_snapshots WHERE taken_at >= %s ORDER BY taken_at",
            (since,),
        )
        return list(await cur.fetchall())
