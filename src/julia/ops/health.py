"""Health: is the process alive, can it serve, and how healthy is each part of Júlia.

    liveness()                       # no I/O: the process answers
    await readiness(app)             # Postgres and Redis answer (the shim's /health/ready)
    report = await check(app, deep=False)
    report.status, report.score      # healthy | degraded | unhealthy, 0-100

Each component gets a score from 0 to 100: ``healthy`` from
``JULIA_HEALTH_HEALTHY_SCORE`` (80), ``degraded`` from ``JULIA_HEALTH_DEGRADED_SCORE``
(50), ``unhealthy`` below. The overall score is the lowest component score (the
system is as healthy as its sickest part); ``mean_score`` is reported beside it.
A component whose tables do not exist (migrations not applied) or that has nothing
to judge (no chip registered) is ``not_available``: reported, left out of the score.

Components: ``storage`` (Postgres, Redis), ``queue``, ``workers``, ``scheduler``
(late jobs), ``chips``, ``circuits``. ``deep`` adds per-chip rows and each
circuit's transitions of the last 24 hours.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg

from julia.agent import pending, turn
from julia.chips import pool, trust
from julia.core.app import App
from julia.core.errors import MigrationError
from julia.core.logs import get_logger
from julia.core.redact import mask_phone
from julia.fila import queue as fila
from julia.llm import client as llm_client
from julia.ops import heartbeat
from julia.ops.jobs import runner
from julia.resilience import breaker

log = get_logger(__name__)

HEALTHY, DEGRADED, UNHEALTHY, NOT_AVAILABLE = "healthy", "degraded", "unhealthy", "not_available"
#: Components checked by :func:`check`, in display order.
COMPONENTS = ("storage", "queue", "workers", "scheduler", "chips", "circuits", "agent")
#: Service breakers whose opening hurts more than a single chip's.
_SERVICE_PENALTY = {"evolution": 60, "anthropic": 40, "chatwoot": 20, "slack": 10}
_CHECK_TIMEOUT_S = 2.0


class NotAvailable(Exception):
    """A component has nothing to judge: its tables do not exist, or nothing is registered."""


@dataclass(frozen=True)
class Component:
    """One part of the system: its score, status, a one-line summary and the facts."""

    name: str
    status: str
    score: int | None
    summary: str
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Report:
    """What ``julia health`` prints: overall status and score, and every component."""

    status: str
    score: int
    mean_score: int
    checked_at: datetime
    components: list[Component]

    @property
    def healthy(self) -> bool:
        return self.status == HEALTHY

    def component(self, name: str) -> Component:
        return next(c for c in self.components if c.name == name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "score": self.score,
            "mean_score": self.mean_score,
            "checked_at": self.checked_at,
            "components": [c.as_dict() for c in self.components],
        }


@dataclass(frozen=True)
class Readiness:
    """Postgres and Redis reachable: ``ok`` is what ``/health/ready`` answers 200 or 503 on."""

    ok: bool
    checks: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return {"status": "ok" if self.ok else "unavailable", **self.checks}


def status_of(score: int | None, app: App) -> str:
    if score is None:
        return NOT_AVAILABLE
    if score >= app.settings.health_healthy_score:
        return HEALTHY
    if score >= app.settings.health_degraded_score:
        return DEGRADED
    return UNHEALTHY


def _component(app: App, name: str, score: float, summary: str, **details: Any) -> Component:
    value = max(0, min(100, round(score)))
    return Component(name, status_of(value, app), value, summary, details)


def liveness() -> dict[str, str]:
    """The process is up and its event loop answers (no I/O)."""
    return {"status": "ok"}


async def _ping_postgres(app: App) -> None:
    async with app.pool.connection(timeout=_CHECK_TIMEOUT_S) as conn:
        await conn.execute("SELECT 1")


async def _ping_redis(app: App) -> None:
    await app.redis.ping()


async def readiness(app: App) -> Readiness:
    """Postgres and Redis each answer within 2 s (the ``/health/ready`` contract)."""
    checks: dict[str, str] = {}
    for name, ping in (("postgres", _ping_postgres), ("redis", _ping_redis)):
        try:
            await asyncio.wait_for(ping(app), timeout=_CHECK_TIMEOUT_S)
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"unavailable: {type(exc).__name__}"
    return Readiness(all(v == "ok" for v in checks.values()), checks)


async def storage(app: App, ready: Readiness | None = None) -> Component:
    ready = ready or await readiness(app)
    pg, rd = ready.checks["postgres"] == "ok", ready.checks["redis"] == "ok"
    if pg and rd:
        return _component(app, "storage", 100, "Postgres and Redis answer", **ready.checks)
    if pg:
        # Without Redis: rate limits count from Postgres, breakers run locally, no locks.
        return _component(app, "storage", 40, "Redis unreachable", **ready.checks)
    return _component(app, "storage", 0, "Postgres unreachable", **ready.checks)


# --- queue -------------------------------------------------------------------------


async def queue_counts(app: App) -> dict[str, int] | None:
    """Messages by status, or None when the queue is not installed."""
    try:
        async with app.pool.connection() as conn:
            cur = await conn.execute("SELECT status, count(*) AS n FROM fila_mensagens GROUP BY 1")
            return {r["status"]: int(r["n"]) for r in await cur.fetchall()}
    except psycopg.errors.UndefinedTable:
        return None


async def queue_stats(app: App) -> dict[str, Any]:
    """The queue's statistics (its own library function); NotAvailable without it."""
    try:
        stats: dict[str, Any] = await fila.stats(app)
    except psycopg.errors.UndefinedTable as exc:
        raise NotAvailable("the outbound queue's tables do not exist") from exc
    return stats


async def due_pending(app: App) -> int:
    """Pending messages whose time has come (what a live worker should be sending)."""
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM fila_mensagens"
            " WHERE status = 'pendente' AND proxima_tentativa_em <= %s",
            (app.clock.now(),),
        )
        row = await cur.fetchone()
    return int(row["n"]) if row else 0


async def queue(app: App) -> Component:
    """Pending, processing, oldest pending age, sent and errors in the last hour, mean
    processing time. Loses points for a stalled backlog, an error rate, uncertain sends."""
    st = await queue_stats(app)
    s = app.settings
    score = 100
    problems = []
    oldest = float(st.get("oldest_pending_age_s") or 0)
    if oldest > s.alert_backlog_age_min * 60:
        score -= 45
        problems.append(f"oldest due message waiting {oldest / 60:.0f} min")
    elif oldest > 300:
        score -= 15
        problems.append(f"oldest due message waiting {oldest / 60:.0f} min")
    sent, errors = int(st.get("sent_last_hour") or 0), int(st.get("errors_last_hour") or 0)
    if errors and errors / max(1, sent + errors) > 0.2:
        score -= 30
        problems.append(f"{errors} errors vs {sent} sent in the last hour")
    elif errors and errors / max(1, sent + errors) > 0.05:
        score -= 10
        problems.append(f"{errors} errors vs {sent} sent in the last hour")
    if st.get("incerta"):
        score -= 10
        problems.append(f"{st['incerta']} uncertain send(s) to review")
    summary = "; ".join(problems) or (
        f"{st.get('pendente', 0)} pending, {st.get('processando', 0)} processing,"
        f" {sent} sent in the last hour"
    )
    keys = ("pendente", "processando", "oldest_pending_age_s", "sent_last_hour",
            "errors_last_hour", "mean_processing_s", "dlq", "incerta")  # fmt: skip
    return _component(app, "queue", score, summary, **{k: st.get(k) for k in keys},
                      counts=st.get("counts", {}))  # fmt: skip


# --- workers -----------------------------------------------------------------------


async def live_worker_count(app: App) -> int | None:
    """Workers whose last beat is within the heartbeat TTL, or None without the table."""
    since = app.clock.now() - timedelta(seconds=app.settings.worker_heartbeat_ttl_s)
    try:
        async with app.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) AS n FROM workers WHERE stopped_at IS NULL AND last_beat_at > %s",
                (since,),
            )
            row = await cur.fetchone()
    except psycopg.errors.UndefinedTable:
        return None
    return int(row["n"]) if row else 0


async def worker_rows(app: App) -> list[dict[str, Any]]:
    """Every worker seen in the last day with its state (alive, dead, stopped)."""
    try:
        infos = await heartbeat.workers_status(app, include_stopped=False)
    except psycopg.errors.UndefinedTable as exc:
        raise NotAvailable("the workers table does not exist") from exc
    return [i.as_dict() for i in infos]


async def workers(app: App) -> Component:
    """Live workers by heartbeat. No live worker while messages are due is the incident
    this whole issue exists for: score 0. A worker silent for longer than
    ``JULIA_ALERT_HEARTBEAT_MAX_S`` (2 min) without stopping cleanly costs points."""
    rows = await worker_rows(app)
    max_age = app.settings.alert_heartbeat_max_s
    alive = [w for w in rows if w["state"] == "alive"]
    silent = [w for w in rows if w["stopped_at"] is None and w["age_s"] > max_age]
    due = await due_pending(app)
    shown = [{k: w[k] for k in ("id", "state", "age_s", "processed", "failed", "consumers")}
             for w in rows]  # fmt: skip
    if not alive:
        score, summary = (0, f"no live worker and {due} message(s) due") if due else (
            50, "no live worker")  # fmt: skip
    elif silent:
        score, summary = 70, f"{len(silent)} worker(s) silent for over {max_age:.0f} s"
    else:
        score, summary = 100, f"{len(alive)} live worker(s)"
    return _component(app, "workers", score, summary, alive=len(alive), silent=len(silent),
                      due_pending=due, workers=shown)  # fmt: skip


# --- scheduler ---------------------------------------------------------------------


async def scheduler(app: App) -> Component:
    """Late jobs (not run for ``JULIA_JOB_LATE_FACTOR`` times their interval), among
    those the running schedulers recorded (``job_schedules``), not this shell's view."""
    try:
        late = await runner.late_jobs(app)
        total = sum(not r["disabled"] for r in await runner.schedules(app))
    except (MigrationError, psycopg.errors.UndefinedTable) as exc:
        raise NotAvailable("the scheduler's tables do not exist") from exc
    if late is None:
        return _component(app, "scheduler", 60, "the scheduler has never run", late=[], jobs=total)
    if not late:
        return _component(app, "scheduler", 100, f"{total} job(s) on time", late=[], jobs=total)
    score = 70 - 50 * len(late) / max(1, total)
    names = [j["job"] for j in late]
    return _component(app, "scheduler", score, f"late: {', '.join(names)}", late=late, jobs=total)


# --- chips -------------------------------------------------------------------------


async def chip_rows(app: App) -> list[dict[str, Any]]:
    """Per chip (banned and retired left out): masked number, trust and level, circuit,
    available, may prospect, sent and errors in 24 h. From the chips library."""
    try:
        listed = await pool.list_chips(app)
    except psycopg.errors.UndefinedTable as exc:
        raise NotAvailable("the chips tables do not exist") from exc
    now = app.clock.now()
    out = []
    for c in listed:
        if c.status in ("banned", "retired"):
            continue
        usable = (c.status == "active" and c.connected is not False and not c.in_cooldown(now)
                  and c.circuit not in ("open", "forced_open"))  # fmt: skip
        level = trust.LEVELS.get(c.trust_level)
        out.append({
            "id": c.id, "instance": c.instance, "telefone": mask_phone(c.telefone),
            "provider": c.provider, "status": c.status, "trust_score": c.trust_score,
            "trust_level": c.trust_level, "connected": c.connected,
            "cooldown_until": c.cooldown_until, "circuit": c.circuit, "available": usable,
            "may_prospect": bool(usable and level is not None and level.may_prospect),
            "sent_24h": c.sent_24h, "errors_24h": c.errors_24h,
        })  # fmt: skip
    return out


async def chips(app: App, deep: bool = False) -> Component:
    """Counts available, with open circuit, able to prospect; below the pool minimum
    or with no chip that may prospect, the pool is unhealthy."""
    rows = await chip_rows(app)
    if not rows:
        raise NotAvailable("no chips registered (JULIA_EVOLUTION_INSTANCE sends everything)")
    available = sum(1 for r in rows if r["available"])
    open_circuit = sum(1 for r in rows if r["circuit"] in ("open", "forced_open"))
    prospect = sum(1 for r in rows if r["may_prospect"])
    minimum = app.settings.chip_pool_min_active
    if available == 0:
        score, summary = 0, "no chip available"
    elif available < minimum:
        score, summary = 60, f"{available} available, below the minimum of {minimum}"
    else:
        score, summary = 100, f"{available} available"
    if prospect == 0 and available:
        score = min(score, 60)
        summary += "; none may prospect"
    details: dict[str, Any] = {"total": len(rows), "available": available,
                               "open_circuit": open_circuit, "may_prospect": prospect}  # fmt: skip
    if deep:
        details["chips"] = rows
    return _component(app, "chips", score, summary, **details)


# --- circuits ----------------------------------------------------------------------


async def circuits(app: App, deep: bool = False) -> Component:
    """Every breaker's state; open service breakers cost most, open chip breakers a little,
    Redis down (breakers on local state) a little. ``deep``: transitions of the last 24 h."""
    statuses = await breaker.status_all(app)
    score = 100
    opened = []
    for st in statuses:
        if st.state in ("open", "forced_open", "half_open"):
            opened.append(f"{st.name} {st.state}")
            base = st.name.split(":")[0]
            penalty = _SERVICE_PENALTY.get(base, 5)
            score -= penalty // 2 if st.state == "half_open" else penalty
    local = any(st.backend == "local" for st in statuses)
    if local:
        score -= 10
    since = app.clock.now() - timedelta(hours=24)
    try:
        async with app.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT name, from_state, to_state, reason, error_type, at"
                " FROM circuit_transitions WHERE at >= %s ORDER BY at DESC, id DESC LIMIT 200",
                (since,),
            )
            moves = list(await cur.fetchall())
    except psycopg.errors.UndefinedTable as exc:
        raise NotAvailable("circuit_transitions does not exist") from exc
    details: dict[str, Any] = {
        "states": {st.name: st.state for st in statuses},
        "transitions_24h": len(moves),
        "local_state": local,
    }
    if deep:
        details["transitions"] = moves
    summary = ", ".join(opened) if opened else f"{len(statuses)} closed"
    return _component(app, "circuits", max(score, 0), summary, **details)


async def agent(app: App) -> Component:
    """Turns waiting for Júlia's reply longer than ``agent_unanswered_min``, and whether a
    model is configured (without one, turns wait: the summary says why)."""
    try:
        waiting, oldest = await pending.unanswered(app)
    except psycopg.errors.UndefinedTable as exc:
        raise NotAvailable("inbox_turnos does not exist") from exc
    configured = turn.ready(app)
    score = 100 - min(80, waiting * 20)
    why = "" if configured else " (" + llm_client.why_not(app.settings) + ")"
    summary = f"{waiting} turn(s) unanswered{why}" if waiting or why else "answering"
    return _component(app, "agent", max(score, 0), summary, unanswered=waiting,
                      oldest_min=round(oldest, 1) if oldest is not None else None,
                      model_configured=configured)  # fmt: skip


# --- the whole -----------------------------------------------------------------------


async def _guarded(app: App, name: str, fn: Callable[[], Awaitable[Component]]) -> Component:
    try:
        return await fn()
    except NotAvailable as exc:
        return Component(name, NOT_AVAILABLE, None, str(exc))
    except Exception as exc:
        log.warning("health.check_failed", component=name, error=f"{type(exc).__name__}: {exc}")
        return Component(name, UNHEALTHY, 0, f"check failed: {type(exc).__name__}: {exc}")


async def check(app: App, deep: bool = False) -> Report:
    """Every component's score and the overall one (``julia health``)."""
    ready = await readiness(app)
    comps = [await storage(app, ready)]
    if ready.checks["postgres"] != "ok":
        comps += [Component(n, UNHEALTHY, 0, "Postgres unreachable") for n in COMPONENTS[1:]]
    else:
        checks: dict[str, Callable[[], Awaitable[Component]]] = {
            "queue": lambda: queue(app),
            "workers": lambda: workers(app),
            "scheduler": lambda: scheduler(app),
            "chips": lambda: chips(app, deep),
            "circuits": lambda: circuits(app, deep),
            "agent": lambda: agent(app),
        }
        for name, fn in checks.items():
            comps.append(await _guarded(app, name, fn))
    scores = [c.score for c in comps if c.score is not None]
    overall = min(scores) if scores else 0
    mean = round(sum(scores) / len(scores)) if scores else 0
    return Report(status_of(overall, app), overall, mean, app.clock.now(), comps)
