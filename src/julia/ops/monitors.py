"""Checks that raise alerts: each looks at Postgres, decides, and calls
:func:`julia.notify.alerts.raise_alert` (which deduplicates within the kind's cooldown).
The scheduler runs them (``watchdog`` every minute, ``fila_backlog`` every 10);
each returns the alerts it raised or refreshed, for the job's record.

- :func:`worker_heartbeat` (``worker.heartbeat``): a worker silent for over 2 minutes
  without a clean stop (within the last hour), or messages due with no live worker.
- :func:`queue_backlog` (``fila.backlog``): more than 50 messages due for over 30 minutes.
- :func:`errors_accumulating` (``fila.errors``): more than 10 failed sends in 5 minutes,
  by type.
- :func:`dlq_growth` (``fila.dlq_growth``): 5 or more dead-lettered within the hour.
- :func:`late_jobs` (``job.late``): a job not run for twice its interval.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import psycopg

from julia.core.app import App
from julia.core.logs import get_logger
from julia.notify import alerts
from julia.notify.alerts import Raised
from julia.ops import gauges, health
from julia.ops.jobs import runner

log = get_logger(__name__)

#: A worker silent for longer than this (and not stopped cleanly) is no longer alerted on.
_RECENT_DEATH_S = 3600

#: Outcomes of a failed send attempt (``fila_eventos.outcome`` leaving ``processando``).
_FAILED = (
    "RETRY", "FAILED_INVALID_NUMBER", "FAILED_CIRCUIT_OPEN", "FAILED_ALL_CHIPS",
    "FAILED_MAX_ATTEMPTS", "FAILED_PERMANENT", "OUTCOME_UNKNOWN",
)  # fmt: skip


async def worker_heartbeat(app: App) -> list[Raised]:
    """Alert ``worker.heartbeat`` when a worker stopped beating without a clean stop
    (last beat older than ``JULIA_ALERT_HEARTBEAT_MAX_S``) or when messages are due
    and no worker is alive."""
    try:
        rows = await health.worker_rows(app)
        due = await health.due_pending(app)
    except (health.NotAvailable, psycopg.errors.UndefinedTable):
        return []
    max_age = app.settings.alert_heartbeat_max_s
    alive = [w for w in rows if w["state"] == "alive"]
    # a worker that died long ago and was replaced is old news: only the last hour counts
    silent = [w for w in rows
              if w["stopped_at"] is None and max_age < w["age_s"] <= _RECENT_DEATH_S]  # fmt: skip
    if not silent and (alive or not due):
        return []
    parts = []
    if silent:
        parts.append(
            f"{len(silent)} worker(s) without heartbeat for over {max_age:.0f} s"
            f" ({', '.join(w['id'] for w in silent[:5])})"
        )
    if not alive:
        parts.append(f"no live worker, {due} message(s) due" if due else "no live worker")
    details = {
        "silent": [{"id": w["id"], "age_s": w["age_s"]} for w in silent],
        "alive": len(alive),
        "due_pending": due,
    }
    severity = "critical" if not alive else "warning"
    raised = await alerts.raise_alert(
        app, "worker.heartbeat", "; ".join(parts), severity=severity, details=details
    )
    return [raised]


async def queue_backlog(app: App) -> list[Raised]:
    """Alert ``fila.backlog`` when more than ``JULIA_ALERT_BACKLOG_PENDING`` messages
    have been due for longer than ``JULIA_ALERT_BACKLOG_AGE_MIN`` minutes."""
    s = app.settings
    now = app.clock.now()
    try:
        async with app.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) AS n, min(proxima_tentativa_em) AS oldest FROM fila_mensagens"
                " WHERE status = 'pendente' AND proxima_tentativa_em <= %s",
                (now - timedelta(minutes=s.alert_backlog_age_min),),
            )
            row = await cur.fetchone()
    except psycopg.errors.UndefinedTable:
        return []
    stale = int(row["n"]) if row else 0
    if stale <= s.alert_backlog_pending:
        return []
    oldest_min = (now - row["oldest"]).total_seconds() / 60 if row and row["oldest"] else 0
    message = (
        f"{stale} messages due for more than {s.alert_backlog_age_min:g} min"
        f" (oldest {oldest_min:.0f} min)"
    )
    details = {"stale_pending": stale, "oldest_min": round(oldest_min, 1)}
    return [await alerts.raise_alert(app, "fila.backlog", message, details=details)]


async def errors_accumulating(app: App) -> list[Raised]:
    """Alert ``fila.errors`` when more than ``JULIA_ALERT_ERRORS_COUNT`` send
    attempts failed within ``JULIA_ALERT_ERRORS_WINDOW_MIN`` minutes, by error type."""
    s = app.settings
    since = app.clock.now() - timedelta(minutes=s.alert_errors_window_min)
    try:
        async with app.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT coalesce(motivo, outcome, 'unknown') AS type, count(*) AS n"
                " FROM fila_eventos WHERE at >= %s AND de = 'processando'"
                " AND outcome = ANY(%s) GROUP BY 1 ORDER BY 2 DESC",
                (since, list(_FAILED)),
            )
            by_type = {r["type"]: int(r["n"]) for r in await cur.fetchall()}
    except psycopg.errors.UndefinedTable:
        return []
    total = sum(by_type.values())
    if total <= s.alert_errors_count:
        return []
    shown = ", ".join(f"{k} {v}" for k, v in list(by_type.items())[:6])
    message = f"{total} send errors in {s.alert_errors_window_min:g} min: {shown}"
    return [
        await alerts.raise_alert(
            app, "fila.errors", message, details={"total": total, "by_type": by_type}
        )
    ]


async def dlq_growth(app: App) -> list[Raised]:
    """Alert ``fila.dlq_growth`` when ``JULIA_ALERT_DLQ_GROWTH`` or more messages went to the
    dead-letter queue within ``JULIA_ALERT_DLQ_WINDOW_MIN`` minutes."""
    s = app.settings
    since = app.clock.now() - timedelta(minutes=s.alert_dlq_window_min)
    try:
        async with app.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) AS n, (SELECT count(*) FROM fila_mensagens WHERE status = 'dlq')"
                " AS total FROM fila_eventos WHERE para = 'dlq' AND at >= %s",
                (since,),
            )
            row = await cur.fetchone()
    except psycopg.errors.UndefinedTable:
        return []
    grew = int(row["n"]) if row else 0
    if grew < s.alert_dlq_growth:
        return []
    total = int(row["total"]) if row else 0
    message = (
        f"{grew} messages dead-lettered in {s.alert_dlq_window_min:g} min ({total} in the DLQ)"
    )
    return [
        await alerts.raise_alert(
            app, "fila.dlq_growth", message, details={"new": grew, "dlq_total": total}
        )
    ]


async def late_jobs(app: App) -> list[Raised]:
    """Alert ``job.late`` (one per job) for jobs not run for twice their interval."""

    late = await runner.late_jobs(app) or []
    out = []
    for j in late:
        when = j["last_run"].isoformat() if j["last_run"] else "never"
        message = f"job {j['job']} has not run for {j['silent_s'] // 60} min (last: {when})"
        out.append(await alerts.raise_alert(app, "job.late", message, details=j, key=j["job"]))
    return out


async def worker_consumer(app: App, stop: asyncio.Event, worker_id: str) -> None:
    """The worker's ``ops`` consumer (``julia.ops.worker.CONSUMERS``): counts every send
    outcome and serves ``/metrics`` on ``JULIA_WORKER_METRICS_PORT``, and every
    ``JULIA_WORKER_WATCH_INTERVAL_S`` checks that the scheduler runs (``job.late``), so
    the worker and the scheduler watch each other: if every scheduler is down, the
    workers say so."""
    server = gauges.instrument_worker(app)
    refresher = asyncio.create_task(_refresh_gauges(app, stop), name="ops-gauges")
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), app.settings.worker_watch_interval_s)
            if stop.is_set():
                break
            try:
                await late_jobs(app)
            except Exception as exc:  # a check must never take the worker down
                log.warning(
                    "ops.watch_failed", worker=worker_id, error=f"{type(exc).__name__}: {exc}"
                )
    finally:
        refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refresher
        if server is not None:
            server.shutdown()


async def _refresh_gauges(app: App, stop: asyncio.Event) -> None:
    """The worker's ``/metrics`` shows the shared state too (queue depth, live workers,
    Redis memory), as the shim's does: refreshed from the start, then periodically."""
    while not stop.is_set():
        await gauges.refresh_quietly(app)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), app.settings.worker_metrics_refresh_s)
