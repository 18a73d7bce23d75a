"""The way back: Chatwoot's webhooks (verified and stored by the shim as
``mensagens_recebidas`` rows of kind ``chatwoot``) acted on, each delivery once.

- an operator's public message (``message_created``, ``outgoing``, not private, not one
  Júlia posted herself) -> queued to the doctor as type ``humano`` (the queue routes it
  through the conversation's chip) and kept in the history; the handoff is
  ``em_atendimento``;
- the conversation resolved (or set back to ``pending``, Chatwoot's "back to the bot"),
  or the ``humano`` label removed -> control back to Júlia, with a note in the history.

A row is claimed with ``FOR UPDATE SKIP LOCKED`` and acted on in the same transaction
that marks it ``processada``/``ignorada``: any number of consumers, each row once, and
the queued message has an idempotency key on top. Rows are taken after
``JULIA_HANDOFF_WEBHOOK_SETTLE_S``, so the echo of a message Júlia posted is already
known as hers.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

from psycopg import AsyncConnection

from julia.core.app import App
from julia.core.logs import get_logger
from julia.fila.queue import NewMessage, enqueue
from julia.handoff import control

log = get_logger(__name__)

_CLAIM = """
SELECT id, evento, payload, attempts FROM mensagens_recebidas
WHERE kind = 'chatwoot' AND status = 'pendente' AND received_at <= %(settled)s
  AND COALESCE(next_attempt_at, '-infinity') <= %(now)s
ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED
"""
_RELEASE_STATUSES = {"resolved": "resolvido no Chatwoot", "pending": "devolvido ao bot no Chatwoot"}


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def label_removed(body: dict[str, Any], label: str) -> bool:
    """True when ``changed_attributes`` says ``label`` was in the set and is not now."""
    changes = body.get("changed_attributes")
    for change in changes if isinstance(changes, list) else []:
        if not isinstance(change, dict):
            continue
        for key in ("label_list", "labels", "cached_label_list"):
            c = change.get(key)
            if isinstance(c, dict):
                before, after = c.get("previous_value") or [], c.get("current_value") or []
                if isinstance(before, str):
                    before = [x.strip() for x in before.split(",")]
                if isinstance(after, str):
                    after = [x.strip() for x in after.split(",")]
                if label in before and label not in after:
                    return True
    return False


async def act(
    app: App, conn: AsyncConnection[Any], event: str, body: dict[str, Any]
) -> tuple[str, str]:
    """Act on one Chatwoot event inside ``conn``'s transaction: (status, why)."""
    if event == "message_created":
        return await _message(app, conn, body)
    if event in ("conversation_status_changed", "conversation_updated", "conversation_resolved"):
        conversation_id = _int(body.get("id"))
        h = await control.by_chatwoot(conn, conversation_id) if conversation_id else None
        if h is None:
            return "ignorada", "no open handoff for this Chatwoot conversation"
        status = body.get("status")
        if event == "conversation_resolved":
            status = "resolved"
        reason = _RELEASE_STATUSES.get(str(status))
        if reason is None and label_removed(body, app.settings.handoff_label):
            reason = f"etiqueta '{app.settings.handoff_label}' removida no Chatwoot"
        if reason is None:
            return "ignorada", f"{event}: nothing to act on"
        await control.release(app, conn, h.conversa_id, reason=reason, actor="chatwoot")
        return "processada", reason
    return "ignorada", f"{event}: not used"


async def _message(app: App, conn: AsyncConnection[Any], body: dict[str, Any]) -> tuple[str, str]:
    kind = body.get("message_type")
    if kind not in ("outgoing", 1) or body.get("private") is True:
        return "ignorada", "not an operator's public message"
    message_id = _int(body.get("id"))
    content = body.get("content")
    conversation = body.get("conversation")
    conversation_id = _int(conversation.get("id")) if isinstance(conversation, dict) else None
    if message_id is None or conversation_id is None or not isinstance(content, str):
        return "ignorada", "message without id, conversation or text"
    if not content.strip():
        return "ignorada", "empty message"
    cur = await conn.execute(
        "SELECT 1 FROM handoff_chatwoot_posts WHERE chatwoot_message_id = %s", (message_id,)
    )
    if await cur.fetchone() is not None:
        return "ignorada", "posted by Júlia"
    h = await control.by_chatwoot(conn, conversation_id)
    if h is None:
        return "ignorada", "no open handoff for this Chatwoot conversation"
    sender = body.get("sender") if isinstance(body.get("sender"), dict) else {}
    assert isinstance(sender, dict)
    actor = f"chatwoot:{sender.get('name') or sender.get('id') or 'operador'}"[:80]
    await control.take(app, conn, h, actor=actor)
    queued = await enqueue(
        app,
        NewMessage(
            texto=content,
            tipo="humano",
            medico_id=h.medico_id,
            conversa_id=h.conversa_id,
            idempotency_key=f"chatwoot:message:{message_id}",
        ),
        conn=conn,
    )
    await control.record_human_message(app, conn, h, content, f"chatwoot:{message_id}")
    return "processada", f"queued to the doctor as fila {queued.id}"


async def step(app: App) -> bool:
    """Act on the oldest settled Chatwoot webhook; False when there is none."""
    now = app.clock.now()
    settled = now - timedelta(seconds=app.settings.handoff_webhook_settle_s)
    row: dict[str, Any] | None = None
    try:
        async with app.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(_CLAIM, {"settled": settled, "now": now})
            row = await cur.fetchone()
            if row is None:
                return False
            body = row["payload"] if isinstance(row["payload"], dict) else {}
            status, why = await act(app, conn, str(row["evento"]), body)
            await conn.execute(
                "UPDATE mensagens_recebidas SET status = %s, status_motivo = %s,"
                " attempts = attempts + 1, updated_at = %s WHERE id = %s",
                (status, why[:200], app.clock.now(), row["id"]),
            )
        log.info("handoff.webhook", id=row["id"], evento=row["evento"], status=status, why=why)
        return True
    except Exception as exc:
        if row is None:
            raise
        await _failed(app, row, exc)
        return True


async def _failed(app: App, row: dict[str, Any], exc: Exception) -> None:
    attempt = int(row["attempts"]) + 1
    parked = attempt >= app.settings.inbox_max_attempts
    error = f"{type(exc).__name__}: {exc}"[:1000]
    now = app.clock.now()
    async with app.pool.connection() as conn:
        await conn.execute(
            "UPDATE mensagens_recebidas SET attempts = %s, last_error = %s, updated_at = %s,"
            " status = CASE WHEN %s THEN 'erro' ELSE status END, next_attempt_at = %s"
            " WHERE id = %s",
            (attempt, error, now, parked, now + timedelta(seconds=2 ** min(attempt, 8)), row["id"]),
        )
    log.error("handoff.webhook_failed", id=row["id"], attempt=attempt, parked=parked, error=error)


async def drain(app: App, limit: int = 1000) -> int:
    """Act on every settled webhook (tests, one-off runs); how many."""
    n = 0
    while n < limit and await step(app):
        n += 1
    return n


async def run(app: App, stop: asyncio.Event, worker_id: str) -> None:
    """The worker's ``handoff`` consumer: Chatwoot webhooks until ``stop``."""
    log.info("handoff.consumer_started", worker_id=worker_id)
    while not stop.is_set():
        try:
            busy = await step(app)
        except Exception as exc:  # storage trouble: wait and try again, never die
            log.error("handoff.consumer_error", error=type(exc).__name__)
            busy = False
        if not busy:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), app.settings.handoff_poll_s)
    log.info("handoff.consumer_stopped", worker_id=worker_id)
