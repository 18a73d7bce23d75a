"""Gauges refreshed from Postgres, and the send-outcome counters a worker installs.

The metric registry (:mod:`julia.core.metrics`) reads nothing; what describes shared
state (queue depth, live workers, Redis memory) is read here, at the top of the house,
before a scrape (the shim's ``/metrics``), by the metrics snapshot job, and every
``JULIA_WORKER_METRICS_REFRESH_S`` in a worker (its ``/metrics`` is served from a thread,
which cannot await a refresh at scrape time).
"""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg

from julia.core import logs, metrics
from julia.core.app import App
from julia.ops import health, overview
from julia.outbound import send

log = logs.get_logger(__name__)


async def refresh(app: App) -> None:
    """Set the gauges that describe shared state from Postgres (queue depth by status,
    live workers). A table that does not exist yet leaves its gauge untouched."""
    queue = await health.queue_counts(app)
    if queue is not None:
        for status, count in queue.items():
            metrics.QUEUE_DEPTH.labels(status).set(count)
    alive = await health.live_worker_count(app)
    if alive is not None:
        metrics.WORKERS_ALIVE.set(alive)
    with contextlib.suppress(health.NotAvailable):
        stats = await health.queue_stats(app)
        metrics.QUEUE_OLDEST_DUE.set(float(stats.get("oldest_pending_age_s") or 0.0))
    with contextlib.suppress(psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn):
        waiting = await overview.handoffs_waiting(app, limit=1)
        metrics.HANDOFFS_WAITING.set(waiting["count"])
    with contextlib.suppress(Exception):  # Redis down: the gauge keeps its last value
        mem = await app.redis.info("memory")
        metrics.REDIS_MEMORY.set(float(mem.get("used_memory", 0)))
        metrics.REDIS_MAXMEMORY.set(float(mem.get("maxmemory", 0)))


async def refresh_quietly(app: App) -> None:
    """:func:`refresh` for a loop: a failure is logged, never raised."""
    try:
        await refresh(app)
    except Exception as exc:
        log.warning("metrics.refresh_failed", error=f"{type(exc).__name__}: {exc}")


async def render(app: App | None = None) -> bytes:
    """The exposition text of this process's metrics (refreshed first when ``app`` is given)."""
    if app is not None:
        with contextlib.suppress(Exception):  # a scrape must answer with Postgres down
            await refresh(app)
    return await metrics.render()


async def count_send(app: App, sent: Any) -> None:
    """A send-outcome hook (``julia.outbound.send.on_outcome``): sends by outcome and chip,
    due→sent latency, rate-limit denials by limit."""
    route = sent.route
    chip = "-" if route is None else str(route.chip_id or route.instance or "-")
    outcome = str(getattr(sent.outcome, "value", sent.outcome))
    metrics.SENDS.labels(outcome, chip).inc()
    if outcome == "SENT":
        due = sent.message.agendar_para
        metrics.SEND_LATENCY.observe(max(0.0, (app.clock.now() - due).total_seconds()))
    elif outcome == "RESCHEDULED_RATE_LIMIT":
        decision = getattr(route, "decision", None)
        metrics.RATE_LIMIT_DENIALS.labels(str(getattr(decision, "limit", None) or "unknown")).inc()


def instrument_worker(app: App) -> Any:
    """What a worker process calls once at start: count every send outcome here and serve
    ``/metrics`` on ``JULIA_WORKER_METRICS_PORT``. Returns the server (or None)."""
    send.on_outcome(count_send)  # idempotent
    return metrics.serve(app.settings.worker_metrics_port, app.settings.metrics_host)
