"""Every Prometheus metric Júlia exports, in one module.

    from julia.core import metrics
    metrics.SENDS.labels(outcome="SENT", chip="7").inc()
    metrics.JOB_DURATION.labels(job="fila_rescue").observe(0.42)

Metrics are per process (the Prometheus model: each process is scraped on its own).
This module only defines them and reads nothing, so every floor may count here.
The shim serves them at ``/metrics``; the worker and the scheduler serve theirs on
``JULIA_WORKER_METRICS_PORT`` / ``JULIA_SCHEDULER_METRICS_PORT`` (:func:`serve`).
Gauges that describe shared state (queue depth by status) are refreshed from
Postgres by :mod:`julia.ops.gauges` before a scrape and by the metrics snapshot job.
Names follow Prometheus conventions (``_total`` counters, ``_seconds`` durations);
label values are bounded (events, outcomes, chip ids).
"""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

from julia.core.logs import get_logger

log = get_logger(__name__)

__all__ = [
    "AGENT_FALLBACKS",
    "ALERTS",
    "CIRCUIT_LOCAL",
    "CIRCUIT_REFUSED",
    "CIRCUIT_STATE",
    "CIRCUIT_TRANSITIONS",
    "CONTENT_TYPE",
    "GUARDRAIL_VIOLATIONS",
    "HANDOFFS",
    "HANDOFF_REPLIES_DROPPED",
    "INBOX_LAG",
    "JOB_DURATION",
    "JOB_RUNS",
    "LLM_CALLS",
    "LLM_LATENCY",
    "LLM_TOKENS",
    "QUEUE_DEPTH",
    "RATE_LIMIT_DECISIONS",
    "RATE_LIMIT_DENIALS",
    "SENDS",
    "SEND_LATENCY",
    "SLACK_DELIVERIES",
    "STATE_VALUES",
    "TOOL_CALLS",
    "TURNS",
    "TURN_DURATION",
    "WEBHOOKS",
    "WEBHOOK_SECONDS",
    "WORKERS_ALIVE",
    "count_webhook",
    "observe_turn",
    "render",
    "serve",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST
_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_SLOW = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)

# --- handoff --------------------------------------------------------------------
HANDOFFS = Counter("julia_handoffs_total", "Handoffs opened, by trigger.", ["trigger"])
HANDOFF_REPLIES_DROPPED = Counter(
    "julia_handoff_replies_dropped_total",
    "Júlia's replies dropped because a person took the conversation mid-turn.",
)

# --- inbound --------------------------------------------------------------------
WEBHOOKS = Counter(
    "julia_webhooks_received_total",
    "Webhooks received, by event and outcome (stored, duplicate, ignored, rejected...).",
    ["provider", "event", "outcome"],
)
WEBHOOK_SECONDS = Histogram(
    "julia_webhook_seconds",
    "Time the shim took to answer a webhook.",
    ["provider"],
    buckets=_FAST,
)
INBOX_LAG = Histogram(
    "julia_inbox_lag_seconds",
    "Time from a message's arrival in the inbox to the start of its turn.",
    buckets=_SLOW,
)
TURNS = Counter("julia_turns_total", "Inbound turns processed, by outcome.", ["outcome"])
TURN_DURATION = Histogram(
    "julia_turn_duration_seconds", "Time to process one inbound turn.", buckets=_SLOW
)

# --- agent ----------------------------------------------------------------------
LLM_CALLS = Counter(
    "julia_llm_calls_total", "LLM calls, by model and outcome.", ["model", "outcome"]
)
LLM_TOKENS = Counter(
    "julia_llm_tokens_total", "LLM tokens, by model and kind (input, output).", ["model", "kind"]
)
LLM_LATENCY = Histogram(
    "julia_llm_latency_seconds", "Latency of one LLM call.", ["model"], buckets=_SLOW
)
TOOL_CALLS = Counter(
    "julia_tool_calls_total", "Agent tool calls, by tool and outcome.", ["tool", "outcome"]
)
AGENT_FALLBACKS = Counter(
    "julia_agent_fallbacks_total", "Turns answered with the fallback reply, by reason.", ["reason"]
)
GUARDRAIL_VIOLATIONS = Counter(
    "julia_guardrail_violations_total", "Replies stopped or fixed by a guardrail.", ["rule"]
)

# --- outbound -------------------------------------------------------------------
QUEUE_DEPTH = Gauge("julia_queue_depth", "Messages in the outbound queue, by status.", ["status"])
SENDS = Counter("julia_sends_total", "Send attempts, by outcome and chip.", ["outcome", "chip"])
SEND_LATENCY = Histogram(
    "julia_send_latency_seconds",
    "Time from a message's due time to its send.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
RATE_LIMIT_DENIALS = Counter(
    "julia_rate_limit_denials_total", "Outbound messages held back by a rate limit.", ["limit"]
)
WORKERS_ALIVE = Gauge("julia_workers_alive", "Workers whose heartbeat is fresh.")

# --- resilience (counted in julia.resilience.breaker and .ratelimit) ---------------------
#: Numeric value of each breaker state in ``julia_circuit_state``.
STATE_VALUES = {"closed": 0, "half_open": 1, "open": 2, "forced_open": 3, "disabled": 4}

CIRCUIT_STATE = Gauge(
    "julia_circuit_state",
    "Circuit breaker state: 0 closed, 1 half_open, 2 open, 3 forced_open, 4 disabled.",
    ["name"],
)
CIRCUIT_TRANSITIONS = Counter(
    "julia_circuit_transitions",
    "Circuit breaker transitions seen by this process.",
    ["name", "from_state", "to_state"],
)
CIRCUIT_REFUSED = Counter(
    "julia_circuit_refused", "Calls refused by an open circuit breaker.", ["name"]
)
CIRCUIT_LOCAL = Gauge(
    "julia_circuit_local_fallback",
    "1 while this process keeps breaker state locally because Redis is unreachable.",
)
RATE_LIMIT_DECISIONS = Counter(
    "julia_rate_limit_decisions",
    "Outbound rate-limit decisions by limit ('ok' when allowed) and backend.",
    ["limit", "backend"],
)

# --- operations -----------------------------------------------------------------
JOB_RUNS = Counter(
    "julia_job_runs_total", "Scheduled job runs, by job and status.", ["job", "status"]
)
JOB_DURATION = Histogram(
    "julia_job_duration_seconds", "Duration of one job run.", ["job"], buckets=_SLOW
)
ALERTS = Counter(
    "julia_alerts_total",
    "Alerts raised, by kind, severity and whether a repeat was suppressed.",
    ["kind", "severity", "deduplicated"],
)
SLACK_DELIVERIES = Counter(
    "julia_slack_deliveries_total", "Alert deliveries to Slack, by outcome.", ["outcome"]
)


async def render() -> bytes:
    """The exposition text of this process's metrics as they stand
    (:func:`julia.ops.gauges.render` refreshes the shared-state gauges first)."""
    return await asyncio.to_thread(generate_latest, REGISTRY)


def serve(port: int, host: str = "127.0.0.1") -> Any:
    """Serve ``/metrics`` on ``host:port`` from a background thread (worker, scheduler).
    Returns the server (``.shutdown()`` stops it), or None when ``port`` is 0 or taken
    (a second process on one machine: logged, never fatal)."""
    if port == 0:
        return None
    try:
        server, _thread = start_http_server(port, addr=host)
    except OSError as exc:
        log.warning("metrics.port_unavailable", port=port, error=str(exc))
        return None
    log.info("metrics.serving", host=host, port=port)
    return server


def count_webhook(
    provider: str, events: Any, outcome: str, duration_s: float | None = None
) -> None:
    """One webhook request: each of its events by name (``messages.upsert``,
    ``ack``, ``connection``...; ``none`` when it was rejected before parsing), the
    request's outcome (accepted, duplicate, 401...) and the time it took to answer."""
    names = [
        getattr(ev, "evento", None) or type(ev).__name__.lower().replace("event", "")
        for ev in events or ()
    ] or ["none"]
    for name in names:
        WEBHOOKS.labels(provider, name, outcome).inc()
    if duration_s is not None:
        WEBHOOK_SECONDS.labels(provider).observe(max(0.0, duration_s))


def observe_turn(outcome: str, duration_s: float, lag_s: float | None = None) -> None:
    """One inbound turn: its outcome, how long it took, and the inbox lag (arrival of
    its first message to the start of the turn)."""
    TURNS.labels(outcome).inc()
    TURN_DURATION.observe(max(0.0, duration_s))
    if lag_s is not None:
        INBOX_LAG.observe(max(0.0, lag_s))
