"""Running one job: the distributed lock, once per tick, a ``job_executions`` row, metrics.

    execution = await run_job(app, "fila_rescue")               # the scheduler, on a tick
    execution = await run_job(app, "fila_rescue", manual=True)  # ``julia jobs run``

A scheduled run belongs to a tick (the scheduled fire time, computed from the job's
trigger and ``app.clock``). It takes the Redis lock ``job:<name>`` (renewed while
the job runs) and then inserts its row with the tick; the unique index on
``(job, tick)`` refuses a second row, so however many schedulers fire the same tick,
one runs it. Busy lock or tick already taken: ``status="skipped"``, no row. If Redis
is down no lock can be taken; the run goes on, guarded by the tick row alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.types.json import Jsonb

from julia.core import logs, metrics
from julia.core.app import App
from julia.core.errors import LockNotAcquired, MigrationError, StorageError
from julia.core.logs import get_logger
from julia.ops.jobs import registry
from julia.ops.jobs.registry import Done, Job
from julia.resilience.locks import lock

log = get_logger(__name__)

RUNNER = f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class Execution:
    """One run of a job (``skipped`` runs have no row and no id)."""

    id: int | None
    job: str
    tick: datetime | None
    trigger: str
    status: str  # ok | error | running | skipped
    started_at: datetime
    finished_at: datetime | None = None
    items: int | None = None
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    runner: str = RUNNER

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def tz(app: App) -> ZoneInfo:
    return ZoneInfo(app.settings.timezone)


def _normalise(result: Done | int | None) -> tuple[int | None, dict[str, Any]]:
    if isinstance(result, Done):
        return result.items, result.details
    if isinstance(result, int) and not isinstance(result, bool):
        return result, {}
    return None, {}


async def _start(app: App, job: Job, tick: datetime | None, now: datetime) -> int | None:
    async with app.pool.connection() as conn, _schema():
        cur = await conn.execute(
            "INSERT INTO job_executions (job, tick, trigger, status, started_at, runner)"
            " VALUES (%s, %s, %s, 'running', %s, %s)"
            " ON CONFLICT (job, tick) WHERE tick IS NOT NULL DO NOTHING RETURNING id",
            (job.name, tick, "manual" if tick is None else "schedule", now, RUNNER),
        )
        row = await cur.fetchone()
    return int(row["id"]) if row else None


async def _finish(app: App, execution: Execution) -> None:
    async with app.pool.connection() as conn:
        await conn.execute(
            "UPDATE job_executions SET status = %s, finished_at = %s, items = %s, error = %s,"
            " details = %s WHERE id = %s",
            (execution.status, execution.finished_at, execution.items, execution.error,
             Jsonb(execution.details), execution.id),
        )  # fmt: skip


async def run_job(app: App, name: str, *, manual: bool = False) -> Execution:
    """Run ``name`` once (see the module docstring); never raises for the job's own error,
    which is recorded on the row and returned as ``status="error"``."""
    job = registry.get(name)
    now = app.clock.now()
    tick = None if manual else registry.current_tick(job.schedule(app.settings), tz(app), now)
    trigger = "manual" if tick is None else "schedule"
    skipped = Execution(None, name, tick, trigger, "skipped", now)
    async with AsyncExitStack() as stack:
        try:
            await stack.enter_async_context(_lock(app, name))
        except LockNotAcquired:
            log.info("job.skipped", job=name, reason="locked")
            return dataclasses.replace(skipped, error="another run holds the lock")
        except StorageError as exc:
            log.warning("job.lock_unavailable", job=name, error=str(exc))
        exec_id = await _start(app, job, tick, now)
        if exec_id is None:
            log.info("job.skipped", job=name, reason="tick already run", tick=tick)
            return dataclasses.replace(skipped, error="this tick already ran")
        return await _execute(app, job, Execution(exec_id, name, tick, trigger, "running", now))
    raise AssertionError("unreachable")  # pragma: no cover


def _lock(app: App, name: str) -> Any:
    return lock(app, f"job:{name}", ttl_s=app.settings.job_lock_ttl_s, renew=True)


async def _execute(app: App, job: Job, running: Execution) -> Execution:
    logs.new_trace_id()
    log.info("job.started", job=job.name, tick=running.tick, trigger=running.trigger)
    started = time.perf_counter()
    status, error, items = "ok", None, None
    details: dict[str, Any] = {}
    try:
        items, details = _normalise(await job.run(app))
    except asyncio.CancelledError:
        done = dataclasses.replace(
            running, status="error", error="cancelled (scheduler stopping)",
            finished_at=app.clock.now(),
        )  # fmt: skip
        await asyncio.shield(_finish(app, done))
        raise
    except Exception as exc:
        status, error = "error", f"{type(exc).__name__}: {exc}"[:2000]
        log.error("job.failed", job=job.name, error=error, exc_info=True)
    elapsed = time.perf_counter() - started
    done = dataclasses.replace(
        running, status=status, error=error, items=items, finished_at=app.clock.now(),
        details={**logs_safe(details), "duration_s": round(elapsed, 3)},
    )  # fmt: skip
    await _finish(app, done)
    metrics.JOB_RUNS.labels(job.name, status).inc()
    metrics.JOB_DURATION.labels(job.name).observe(elapsed)
    if status == "ok":
        log.info("job.finished", job=job.name, items=items, duration_s=round(elapsed, 3))
    return done


def logs_safe(details: dict[str, Any]) -> dict[str, Any]:
    """Details as JSON-ready values (datetimes as ISO text)."""
    return dict(json.loads(json.dumps(details, default=str)))


# --- what the scheduler and the operators look at --------------------------------------


def scheduled_jobs(app: App) -> list[Job]:
    """Jobs this process would schedule: registered, not in ``JULIA_JOBS_DISABLED``."""
    disabled = set(app.settings.jobs_disabled)
    return [j for j in registry.JOBS.values() if j.name not in disabled]


async def record_schedules(app: App, jobs: list[Job], scheduler: str) -> None:
    """What a scheduler records when it starts: every registered job with its period and
    whether this scheduler runs it. Late-job checks and ``julia health`` read these rows,
    so an operator's shell judges what the schedulers really run."""
    running = {j.name for j in jobs}
    rows = [
        (j.name, j.description, str(sch), sch.period_s, j.name not in running, scheduler)
        for j in registry.JOBS.values()
        for sch in [j.schedule(app.settings)]
    ]
    async with app.pool.connection() as conn, conn.transaction(), _schema():
        # schedulers starting together: one writes at a time, the last one wins whole
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('julia.job_schedules', 0))"
        )
        await conn.execute("DELETE FROM job_schedules")
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO job_schedules (job, description, schedule, period_s, disabled,"
                " scheduler, recorded_at) VALUES (%s, %s, %s, %s, %s, %s, now())",
                rows,
            )


async def schedules(app: App) -> list[dict[str, Any]]:
    """The rows the last scheduler to start recorded (empty: no scheduler has started)."""
    async with app.pool.connection() as conn, _schema():
        cur = await conn.execute("SELECT * FROM job_schedules ORDER BY job")
        return [dict(r) for r in await cur.fetchall()]


async def _last_runs(app: App) -> dict[str, dict[str, Any]]:
    async with app.pool.connection() as conn, _schema():
        cur = await conn.execute(
            "SELECT DISTINCT ON (job) job, id, tick, trigger, status, started_at, finished_at,"
            " items, error FROM job_executions ORDER BY job, started_at DESC, id DESC"
        )
        return {r["job"]: dict(r) for r in await cur.fetchall()}


@asynccontextmanager
async def _schema() -> AsyncIterator[None]:
    """A missing table means the migrations were not applied: say so plainly."""
    try:
        yield
    except psycopg.errors.UndefinedTable as exc:
        raise MigrationError(f"{exc.diag.message_primary}: run `julia db migrate`") from exc


async def list_jobs(app: App) -> list[dict[str, Any]]:
    """Every registered job: schedule, availability, next run, last run and its outcome."""
    now = app.clock.now()
    last = await _last_runs(app)
    disabled = set(app.settings.jobs_disabled)
    zone = tz(app)
    out = []
    for j in sorted(registry.JOBS.values(), key=lambda j: j.name):
        schedule = j.schedule(app.settings)
        reason = "disabled by JULIA_JOBS_DISABLED" if j.name in disabled else None
        prev = last.get(j.name)
        out.append({
            "name": j.name, "description": j.description, "schedule": str(schedule),
            "available": reason is None, "reason": reason,
            "next_run": registry.next_run(schedule, zone, now) if reason is None else None,
            "last_run": prev["started_at"].astimezone(zone) if prev else None,
            "last_status": prev["status"] if prev else None,
            "last_items": prev["items"] if prev else None,
            "last_error": prev["error"] if prev else None,
        })  # fmt: skip
    return out


async def history(app: App, name: str | None = None, limit: int = 50) -> list[Execution]:
    """Recent runs, newest first (all jobs or one)."""
    async with app.pool.connection() as conn, _schema():
        cur = await conn.execute(
            "SELECT id, job, tick, trigger, status, started_at, finished_at, items, error,"
            " details, runner FROM job_executions WHERE %(job)s::text IS NULL OR job = %(job)s"
            " ORDER BY started_at DESC, id DESC LIMIT %(limit)s",
            {"job": name, "limit": limit},
        )
        return [Execution(**r) for r in await cur.fetchall()]


async def late_jobs(app: App) -> list[dict[str, Any]] | None:
    """Jobs the schedulers run (their ``job_schedules`` rows) not run for
    ``JULIA_JOB_LATE_FACTOR`` × their interval. A job that never ran counts from the
    first run of any job (when scheduling began). None when nothing ever ran."""
    now = app.clock.now()
    scheduled = [r for r in await schedules(app) if not r["disabled"]]
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT job, max(started_at) AS last, min(started_at) AS first"
            " FROM job_executions GROUP BY job"
        )
        rows = list(await cur.fetchall())
    if not rows:
        return None
    last = {r["job"]: r["last"] for r in rows}
    began = min(r["first"] for r in rows)
    late = []
    for j in scheduled:
        period = j["period_s"]
        since = last.get(j["job"], began)
        silent = (now - since).total_seconds()
        if silent > app.settings.job_late_factor * period:
            late.append({
                "job": j["job"], "last_run": last.get(j["job"]), "period_s": period,
                "silent_s": round(silent), "due_by": since + timedelta(seconds=period),
            })  # fmt: skip
    return late
