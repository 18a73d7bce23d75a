"""The jobs Júlia runs. Each is a few lines: a schedule from the settings and a call
into the capability's own library function. Importing this module registers them
(the scheduler and the CLI do; the registry below imports no capability).

Not here yet: follow-ups to doctors who went quiet (no follow-up capability exists).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from julia.agent import pending
from julia.campanhas import monitor as campanha_monitor
from julia.chips import health as chip_health
from julia.chips import pool, scoring
from julia.core.app import App
from julia.fila import queue
from julia.handoff import service as handoff
from julia.inbox import consumer as inbox_consumer
from julia.notify import alerts
from julia.notify.alerts import Raised
from julia.ops import gauges, monitors, overview
from julia.ops.jobs.registry import At, Done, Every, job
from julia.outbound import send
from julia.resilience import ratelimit


def _report(report: Any, items: int) -> Done:
    is_instance = dataclasses.is_dataclass(report) and not isinstance(report, type)
    details = dataclasses.asdict(report) if is_instance else {}
    return Done(items, details)


def _raised(raised: list[Raised], **details: Any) -> Done:
    return Done(
        sum(1 for r in raised if r.new),
        {"alerts": [{"kind": r.alert.kind, "id": r.alert.id, "new": r.new} for r in raised],
         **details},
    )  # fmt: skip


# --- operations ------------------------------------------------------------------------


@job("watchdog", "Worker heartbeats, queue backlog, late jobs, undelivered alerts",
     lambda s: Every(s.watchdog_interval_s))  # fmt: skip
async def watchdog(app: App) -> Done:
    """Every minute, so a stall is known within minutes: the backlog is checked here too
    (one indexed count), not only by the 10-minute ``fila_backlog``."""
    raised = await monitors.worker_heartbeat(app)
    raised += await monitors.queue_backlog(app)
    raised += await monitors.late_jobs(app)
    return _raised(raised, resent=await alerts.resend_pending(app))


@job("metrics_snapshot", "Store a metrics snapshot (kept 7 days)",
     lambda s: Every(s.metrics_snapshot_interval_s))  # fmt: skip
async def metrics_snapshot(app: App) -> Done:
    await gauges.refresh(app)
    taken = await overview.take_snapshot(app)
    return Done(1, {"pruned": taken["pruned"]})


@job("interacoes_partitions", "Create the next months' interacoes partitions",
     lambda s: At("01:00", day=1))  # fmt: skip
async def interacoes_partitions(app: App) -> Done:
    today = app.clock.now().date()
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT julia_create_interacoes_partitions(%s, %s) AS n",
            (today, app.settings.partitions_months_ahead + 1),
        )
        row = await cur.fetchone()
    return Done(int(row["n"]) if row else 0)


# --- handoff ---------------------------------------------------------------------------


@job("handoff_waiting", "Handoffs nobody picked up (handoff.waiting); Chatwoot retried",
     lambda s: Every(s.handoff_waiting_interval_s))  # fmt: skip
async def handoff_waiting(app: App) -> Done:
    return _raised(await handoff.waiting(app))


# --- outbound queue --------------------------------------------------------------------


@job("fila_rescue", "Rescue stuck queue messages (expired leases, uncertain sends)",
     lambda s: Every(s.fila_rescue_interval_s))  # fmt: skip
async def fila_rescue(app: App) -> Done:
    """Expired leases back to pendente (or incerta, or DLQ), then uncertain sends
    reconciled against the gateway's history (the worker does both too, more often)."""
    r = await queue.rescue(app)
    reconciled = await send.reconcile(app)
    done = _report(r, r.requeued + r.uncertain + r.dead)
    return Done(done.items, {**done.details, "reconcile": _report(reconciled, 0).details})


@job("fila_expire", "Expire messages pending too long",
     lambda s: At(s.fila_expire_at))  # fmt: skip
async def fila_expire(app: App) -> int:
    return await queue.expire(app)


@job("fila_backlog", "Queue backlog, errors accumulating, DLQ growth",
     lambda s: Every(s.backlog_check_interval_s))  # fmt: skip
async def fila_backlog(app: App) -> Done:
    raised = await monitors.queue_backlog(app)
    raised += await monitors.errors_accumulating(app)
    raised += await monitors.dlq_growth(app)
    return _raised(raised)


# --- inbound ---------------------------------------------------------------------------


@job("inbox_rescue", "Free dead consumers' inbox leases; alert on messages waiting for a turn",
     lambda s: Every(s.inbox_rescue_interval_s))  # fmt: skip
async def inbox_rescue(app: App) -> Done:
    r = await inbox_consumer.rescue(app)
    return _report(r, r.leases_freed)


@job("agent_pending", "Answer due turns: after hours at opening, those that waited for a model",
     lambda s: Every(s.agent_pending_interval_s))  # fmt: skip
async def agent_pending(app: App) -> Done:
    r = await pending.answer_due(app)
    return _report(r, r.turnos)


@job("agent_unanswered", "Alert agent.unanswered on turns waiting too long for Júlia's reply",
     lambda s: Every(s.agent_unanswered_interval_s))  # fmt: skip
async def agent_unanswered(app: App) -> Done:
    return _raised(await pending.check_unanswered(app))


# --- chips -----------------------------------------------------------------------------


@job("chips_trust", "Recompute every chip's trust score",
     lambda s: Every(s.chip_trust_interval_s))  # fmt: skip
async def chips_trust(app: App) -> Done:
    done = await scoring.recalculate_all(app)
    return Done(len(done))


@job("chips_sync", "Sync every chip's connection state with its gateway",
     lambda s: Every(s.chip_sync_interval_s))  # fmt: skip
async def chips_sync(app: App) -> Done:
    r = await chip_health.sync(app)
    return _report(r, r.checked)


@job("chips_health", "Chip health monitor and auto-demotion",
     lambda s: Every(s.chip_health_interval_s))  # fmt: skip
async def chips_health(app: App) -> Done:
    r = await chip_health.monitor(app)
    return _report(r, len(getattr(r, "demoted", []) or []))


@job("chips_pool_check", "Pool check: active, ready and warming chips against minimums",
     lambda s: Every(s.chip_pool_check_interval_s))  # fmt: skip
async def chips_pool_check(app: App) -> Done:
    r = await chip_health.pool_check(app)
    return _report(r, int(bool(getattr(r, "alerts", None))))


@job("chips_prune", "Prune chip events and selection log past 30 days (24 h counts are windowed)",
     lambda s: At(s.chip_counters_reset_at))  # fmt: skip
async def chips_prune(app: App) -> Done:
    """The issue's "reset the chips' 24 h error counters" at 00:00: the pool counts errors
    over a sliding 24 h window of ``chip_eventos``, so there is nothing to reset; the daily
    slot prunes the events instead."""
    pruned = await pool.prune(app)
    return Done(sum(pruned.values()), dict(pruned))


# --- resilience ------------------------------------------------------------------------


@job("ratelimit_prune", "Delete rate-limit events no window needs (older than 48 h)",
     lambda s: At("04:00"))  # fmt: skip
async def ratelimit_prune(app: App) -> int:
    return await ratelimit.prune_events(app)


@job("campanhas", "Start scheduled campaigns, auto-pause on thresholds, alert on a stalled one",
     lambda s: Every(s.campanha_tick_interval_s))  # fmt: skip
async def campanhas(app: App) -> Done:
    report = await campanha_monitor.tick(app)
    return _report(report, len(report.started) + len(report.paused) + len(report.alerts))
