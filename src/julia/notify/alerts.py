"""The one alerts module: store, deduplicate, and tell Slack.

    raised = await alerts.raise_alert(app, "fila.backlog", "63 messages due for 30+ min",
                                      details={"pending": 63})
    raised.new        # False when the same kind (and key) fired within its cooldown

An alert has a kind, a severity (info, warning, critical), a message and details.
It is a row in ``alerts``; the same ``(kind, key)`` within its cooldown
(``JULIA_ALERT_COOLDOWNS_MIN`` per kind, else ``JULIA_ALERT_COOLDOWN_MIN``) does not
add a row: it bumps ``repeats`` and ``last_seen_at`` of the one already there.
Concurrent raisers are serialised by a Postgres advisory lock on the key, so two
processes raising together still write one row.

Slack (an incoming webhook, ``JULIA_SLACK_WEBHOOK_URL``) is told in a background
task, through the ``slack`` circuit breaker and the resilience retry helper: the
caller never waits for Slack, and Slack down never fails the caller. The outcome
is recorded on the row (``notified_at`` or ``notify_error``); the scheduler's
watchdog sends again what was not delivered (:func:`resend_pending`), including
alert rows other modules wrote directly. Short-lived processes call :func:`flush`
before exiting.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from julia.core import metrics
from julia.core.app import App
from julia.core.errors import InvalidInput, MigrationError, NotifyError
from julia.core.logs import get_logger
from julia.core.settings import secret
from julia.resilience.breaker import breakers
from julia.resilience.retry import retry

if TYPE_CHECKING:
    from julia.settings import Settings

log = get_logger(__name__)

SEVERITIES = ("info", "warning", "critical")


@dataclass(frozen=True)
class Kind:
    """A kind of alert the requirements name, with its default severity."""

    name: str
    severity: str
    title: str


#: The alert kinds the requirements name, by the kind string their producer raises
#: (``<area>.<what>``). Any other kind may be raised too (warning, default cooldown).
KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("fila.backlog", "warning", "Queue backlog"),
        Kind("fila.errors", "warning", "Send errors accumulating"),
        Kind("fila.dlq", "critical", "Messages dead-lettered"),
        Kind("fila.dlq_growth", "warning", "Dead-letter queue growing"),
        Kind("worker.heartbeat", "critical", "Worker without heartbeat"),
        Kind("job.late", "warning", "Scheduled job late"),
        Kind("chip.pool_disconnected", "critical", "WhatsApp instances disconnected"),
        Kind("chip.pool_active_low", "critical", "Chip pool low: active chips"),
        Kind("chip.pool_no_prospect", "critical", "Chip pool low: no chip may prospect"),
        Kind("chip.pool_ready_low", "warning", "Chip pool low: ready chips"),
        Kind("chip.pool_warming_low", "warning", "Chip pool low: warming chips"),
        Kind("chip.demoted", "warning", "Chip demoted"),
        Kind("chip.trust_low", "critical", "Chip fell to vermelho/crítico"),
        Kind("handoff.not_notified", "critical", "Handoff without notification"),
        Kind("handoff.requested", "info", "Handoff: a doctor needs a person"),
        Kind("handoff.waiting", "warning", "Handoff nobody picked up"),
        Kind("handoff.mirror_failed", "warning", "Doctor's message not mirrored to Chatwoot"),
        Kind("inbox.stalled", "critical", "Inbound messages not turned into turns"),
        Kind("inbox.parked", "warning", "Inbound messages parked after failing"),
        Kind("agent.unanswered", "critical", "Doctors' turns waiting for Júlia's reply"),
        Kind("agent.no_model", "critical", "No model configured: doctors' turns wait"),
        Kind("llm.budget", "warning", "Daily model token budget spent"),
    )
}

_COLUMNS = (
    "id, kind, severity, message, details, dedupe_key, created_at, repeats, last_seen_at,"
    " notified_at, notify_attempts, notify_error"
)
#: Give up on Slack for one alert after this many attempts in all.
MAX_NOTIFY_ATTEMPTS = 10
#: An undelivered alert this young may still be in some process's delivery task.
_RESEND_AFTER = timedelta(minutes=2)


@dataclass(frozen=True)
class Alert:
    id: int
    kind: str
    severity: str
    message: str
    details: dict[str, Any]
    dedupe_key: str
    created_at: datetime
    repeats: int
    last_seen_at: datetime | None
    notified_at: datetime | None
    notify_attempts: int
    notify_error: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Raised:
    """The alert row, and whether this call created it (False: deduplicated)."""

    alert: Alert
    new: bool


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(json.dumps(details, default=str)))


def cooldown_for(settings: Settings, kind: str) -> timedelta:
    minutes = settings.alert_cooldowns_min.get(kind, settings.alert_cooldown_min)
    return timedelta(minutes=minutes)


async def raise_alert(
    app: App,
    kind: str,
    message: str,
    *,
    severity: str | None = None,
    details: dict[str, Any] | None = None,
    key: str = "",
    conn: AsyncConnection[Any] | None = None,
) -> Raised:
    """Store an alert unless ``(kind, key)`` fired within its cooldown, then tell Slack
    in the background. ``key`` separates subjects of one kind (a chip id).

    ``conn``: write inside the caller's transaction (the alert exists only if it
    commits). Slack is then told by the watchdog's :func:`resend_pending` (within about
    three minutes), since a delivery cannot know whether the transaction committed."""
    severity = severity or (KINDS[kind].severity if kind in KINDS else "warning")
    if severity not in SEVERITIES:
        raise InvalidInput(f"severity must be one of {', '.join(SEVERITIES)}")
    if not kind.strip() or not message.strip():
        raise InvalidInput("an alert needs a kind and a message")
    now = app.clock.now()
    since = now - cooldown_for(app.settings, kind)
    args = (kind, severity, message, _jsonable(details or {}), key, now, since)
    if conn is not None:
        row, new = await _store(conn, *args)
    else:
        async with app.pool.connection() as own, own.transaction():
            row, new = await _store(own, *args)
    alert = Alert(**row)
    metrics.ALERTS.labels(kind, severity, str(not new).lower()).inc()
    if new:
        log.warning("alert.raised", kind=kind, severity=severity, key=key, alert=message)
        if conn is None:
            _deliver_later(app, alert)
    else:
        log.info("alert.deduplicated", kind=kind, key=key, alert_id=alert.id)
    return Raised(alert, new)


async def _store(
    conn: AsyncConnection[Any],
    kind: str,
    severity: str,
    message: str,
    details: dict[str, Any],
    key: str,
    now: datetime,
    since: datetime,
) -> tuple[dict[str, Any], bool]:
    """Bump the recent ``(kind, key)`` alert or insert a new one (in ``conn``'s
    transaction, serialised on an advisory lock of the key)."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"alert:{kind}:{key}",)
    )
    cur = await conn.execute(
        f"UPDATE alerts SET repeats = repeats + 1, last_seen_at = %s WHERE id = ("
        " SELECT id FROM alerts WHERE kind = %s AND dedupe_key = %s AND created_at > %s"
        f" ORDER BY created_at DESC LIMIT 1) RETURNING {_COLUMNS}",
        (now, kind, key, since),
    )
    row = await cur.fetchone()
    if row is not None:
        return row, False
    cur = await conn.execute(
        "INSERT INTO alerts (kind, severity, message, details, dedupe_key, created_at)"
        f" VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
        (kind, severity, message, Jsonb(details), key, now),
    )
    row = await cur.fetchone()
    assert row is not None
    return row, True


def parse_since(text: str | None, now: datetime) -> datetime | None:
    """``30m``, ``2h``, ``7d`` (ago) or an ISO date/time; None for None."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if m:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
        return now - timedelta(**{unit: float(m.group(1))})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(
            f"--since {text!r}: use a duration like 30m, 2h, 7d or an ISO date/time"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=now.tzinfo)


async def list_alerts(
    app: App, *, since: datetime | None = None, kind: str | None = None, limit: int = 100
) -> list[Alert]:
    """Newest first (``julia alerts list``)."""
    if limit < 1:
        raise InvalidInput("--limit must be at least 1")
    try:
        async with app.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM alerts WHERE (%(since)s::timestamptz IS NULL"
                " OR created_at >= %(since)s) AND (%(kind)s::text IS NULL OR kind = %(kind)s)"
                " ORDER BY created_at DESC, id DESC LIMIT %(limit)s",
                {"since": since, "kind": kind, "limit": limit},
            )
            return [Alert(**r) for r in await cur.fetchall()]
    except psycopg.errors.UndefinedColumn as exc:
        raise MigrationError(f"{exc.diag.message_primary}: run `julia db migrate`") from exc


# --- Slack ---------------------------------------------------------------------------

_EMOJI = {"info": ":information_source:", "warning": ":warning:", "critical": ":rotating_light:"}


def slack_payload(alert: Alert) -> dict[str, Any]:
    """The incoming-webhook body: a fallback ``text`` and Block Kit blocks."""
    title = KINDS[alert.kind].title if alert.kind in KINDS else alert.kind
    head = f"{_EMOJI.get(alert.severity, '')} [{alert.severity.upper()}] {title}"
    facts = json.dumps(alert.details, default=str, ensure_ascii=False)
    if len(facts) > 1500:
        facts = facts[:1500] + "…"
    return {
        "text": f"{head}: {alert.message}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{head}*\n{alert.message}"}},
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": f"`{alert.kind}` #{alert.id} · {facts}"},
                ],
            },
        ],
    }


async def _post(app: App, url: str, payload: dict[str, Any]) -> None:
    response = await app.http.post(url, json=payload, timeout=app.settings.slack_timeout_s)
    if response.status_code >= 300:
        retry_after = response.headers.get("retry-after")
        raise NotifyError(
            f"Slack answered {response.status_code}: {response.text[:200]}",
            status_code=response.status_code,
            retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
        )


async def deliver(app: App, alert: Alert) -> bool:
    """Send one alert to Slack (retry helper + ``slack`` breaker) and record the outcome
    on its row. Never raises: Slack down is recorded, not propagated."""

    url = secret(app.settings.slack_webhook_url)
    if not url:
        return False
    payload = slack_payload(alert)
    attempts = 0

    async def once() -> None:
        nonlocal attempts
        attempts += 1
        await breakers(app).get("slack").call(_post, app, url, payload)

    error: str | None = None
    try:
        await retry(app, "slack", once, attempts=app.settings.slack_attempts)
    except Exception as exc:  # NotifyError, httpx errors, CircuitOpen: all recorded
        error = f"{type(exc).__name__}: {exc}"[:500]
    metrics.SLACK_DELIVERIES.labels("ok" if error is None else "failed").inc()
    try:
        async with app.pool.connection() as conn:
            await conn.execute(
                "UPDATE alerts SET notify_attempts = notify_attempts + %s, notify_error = %s,"
                " notified_at = CASE WHEN %s THEN %s ELSE notified_at END WHERE id = %s",
                (attempts, error, error is None, app.clock.now(), alert.id),
            )
    except Exception as exc:  # the delivery happened or not; never fail because of the record
        log.error("alert.record_failed", alert_id=alert.id, error=str(exc))
    if error is None:
        log.info("alert.notified", alert_id=alert.id, kind=alert.kind, attempts=attempts)
    else:
        log.warning("alert.notify_failed", alert_id=alert.id, kind=alert.kind, error=error)
    return error is None


def _deliveries(app: App) -> set[asyncio.Task[bool]]:
    tasks: set[asyncio.Task[bool]] = app.extensions.setdefault("alerts.deliveries", set())
    return tasks


def _deliver_later(app: App, alert: Alert) -> None:
    if not secret(app.settings.slack_webhook_url):
        return
    tasks = _deliveries(app)
    task = asyncio.create_task(deliver(app, alert), name=f"alert-{alert.id}")
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def flush(app: App, timeout_s: float | None = None) -> int:
    """Wait (at most ``JULIA_SLACK_FLUSH_S``) for this process's Slack deliveries; what is
    still running then is cancelled and left to :func:`resend_pending`. Returns how many
    were still pending when called."""
    tasks = set(_deliveries(app))
    if not tasks:
        return 0
    timeout = app.settings.slack_flush_s if timeout_s is None else timeout_s
    _done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    return len(tasks)


async def resend_pending(app: App) -> int:
    """Deliver the alerts Slack has not accepted yet (younger than
    ``JULIA_SLACK_RESEND_HOURS``, fewer than 10 attempts, older than 2 minutes so a
    delivery still in progress elsewhere is not doubled). Returns how many got through."""
    if not secret(app.settings.slack_webhook_url):
        return 0
    now = app.clock.now()
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT {_COLUMNS} FROM alerts WHERE notified_at IS NULL AND created_at < %s"
            " AND created_at > %s AND notify_attempts < %s ORDER BY id LIMIT 50",
            (now - _RESEND_AFTER, now - timedelta(hours=app.settings.slack_resend_hours),
             MAX_NOTIFY_ATTEMPTS),
        )  # fmt: skip
        rows = [Alert(**r) for r in await cur.fetchall()]
    sent = 0
    for alert in rows:
        if await deliver(app, alert):
            sent += 1
        else:
            break  # Slack is still down: leave the rest for the next run
    return sent
