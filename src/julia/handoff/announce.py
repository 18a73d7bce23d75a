"""Telling people about a handoff: Chatwoot (the conversation, its history, a private
note with the summary and the reason, the ``humano`` label, status ``open``) and Slack
(one message through :mod:`julia.notify.alerts`).

Each Chatwoot call is retried (``julia.handoff.chatwoot``); the progress is saved on
the handoff row (``handoffs.chatwoot``) after each step, so a later try resumes where
the last stopped instead of posting the history twice. When Chatwoot cannot be told,
a critical ``handoff.not_notified`` alert and an error log: the handoff itself holds.
"""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from julia.core.app import App
from julia.core.logs import get_logger
from julia.core.redact import mask_phone
from julia.handoff import chatwoot, history
from julia.handoff.chatwoot import Chatwoot
from julia.handoff.control import Handoff
from julia.notify import alerts

log = get_logger(__name__)


async def _progress(app: App, handoff_id: int) -> dict[str, Any]:
    async with app.pool.connection() as conn:
        cur = await conn.execute("SELECT chatwoot FROM handoffs WHERE id = %s", (handoff_id,))
        row = await cur.fetchone()
    return dict(row["chatwoot"]) if row else {}


async def _save(app: App, handoff_id: int, progress: dict[str, Any]) -> None:
    async with app.pool.connection() as conn:
        await conn.execute(
            "UPDATE handoffs SET chatwoot = %s, chatwoot_conversation_id = %s WHERE id = %s",
            (Jsonb(progress), progress.get("conversation_id"), handoff_id),
        )


async def _posted(app: App, handoff_id: int, message_id: int) -> None:
    """Remember a message Júlia posted, so its webhook echo is not taken for an operator's."""
    async with app.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO handoff_chatwoot_posts (chatwoot_message_id, handoff_id, created_at)"
            " VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
            (message_id, handoff_id, app.clock.now()),
        )


def note_text(handoff: Handoff, label: str) -> str:
    """The private note: only agents see it."""
    return (
        f"Júlia passou a conversa para um atendente.\nMotivo: {handoff.reason}"
        f" (gatilho: {handoff.trigger}, por {handoff.actor})\n\nResumo:\n{handoff.summary or '-'}"
        f"\n\nPara devolver à Júlia: resolva a conversa ou remova a etiqueta '{label}'."
    )


async def to_chatwoot(app: App, handoff: Handoff, nome: str, lines: list[history.Line]) -> int:
    """Open (or finish opening) the handoff's Chatwoot conversation; its id."""
    client = Chatwoot(app)
    p = await _progress(app, handoff.id)
    if "contact_id" not in p:
        contact = await client.find_contact(handoff.telefone)
        if contact is None:
            contact = await client.create_contact(handoff.telefone, nome)
        p |= {"contact_id": contact.id, "source_id": contact.source_id}
        await _save(app, handoff.id, p)
    if not p.get("source_id"):
        p["source_id"] = await client.contact_inbox(int(p["contact_id"]))
        await _save(app, handoff.id, p)
    if "conversation_id" not in p:
        p["conversation_id"] = await client.create_conversation(
            int(p["contact_id"]), str(p["source_id"])
        )
        await _save(app, handoff.id, p)
    conv = int(p["conversation_id"])
    done = int(p.get("history_posted", 0))
    for line in lines[done:]:
        kind = "incoming" if line.direcao == "entrada" else "outgoing"
        message_id = await client.post(conv, line.texto, message_type=kind)
        await _posted(app, handoff.id, message_id)
        p["history_posted"] = done = done + 1
        await _save(app, handoff.id, p)
    label = app.settings.handoff_label
    if not p.get("note"):
        text = note_text(handoff, label)
        await _posted(
            app, handoff.id, await client.post(conv, text, message_type="outgoing", private=True)
        )
        p["note"] = True
        await _save(app, handoff.id, p)
    if not p.get("labeled"):
        await client.add_label(conv, label)
        p["labeled"] = True
        await _save(app, handoff.id, p)
    if not p.get("opened"):
        await client.toggle_status(conv, "open")
        p["opened"] = True
        await _save(app, handoff.id, p)
    return conv


async def notify(app: App, handoff: Handoff, nome: str, lines: list[history.Line]) -> bool:
    """Tell Chatwoot and Slack; True when Chatwoot has it. Never raises."""
    error: str | None = None
    if chatwoot.configured(app):
        try:
            await to_chatwoot(app, handoff, nome, lines)
        except Exception as exc:  # every failure ends in the alert below, never silent
            error = f"{type(exc).__name__}: {exc}"[:500]
    else:
        error = "Chatwoot is not configured (JULIA_CHATWOOT_URL, ...)"
    now = app.clock.now()
    async with app.pool.connection() as conn:
        await conn.execute(
            "UPDATE handoffs SET notify_attempts = notify_attempts + 1, notify_error = %s,"
            " notified_at = CASE WHEN %s THEN %s ELSE notified_at END, updated_at = %s"
            " WHERE id = %s",
            (error, error is None, now, now, handoff.id),
        )
    who = mask_phone(handoff.telefone)
    try:
        if error is None:
            await alerts.raise_alert(
                app,
                "handoff.requested",
                f"Handoff #{handoff.id} ({who}): {handoff.reason}. Aberto no Chatwoot;"
                f" julia handoff show {handoff.id}",
                severity="info",
                key=f"handoff:{handoff.id}",
                details={"handoff_id": handoff.id, "trigger": handoff.trigger},
            )
        else:
            log.error("handoff.not_notified", handoff_id=handoff.id, error=error)
            await alerts.raise_alert(
                app,
                "handoff.not_notified",
                f"Handoff #{handoff.id} ({who}) could not reach Chatwoot ({error[:160]}):"
                f" Júlia is quiet and nobody was told there. julia handoff list --status pendente",
                key=f"handoff:{handoff.id}",
                details={"handoff_id": handoff.id, "error": error, "reason": handoff.reason},
            )
    except Exception as exc:  # the alert is the last resort: log, never fail the handoff
        log.error("handoff.alert_failed", handoff_id=handoff.id, error=type(exc).__name__)
    return error is None


async def mirror(app: App, handoff: Handoff, texts: list[str]) -> int:
    """Post the doctor's new messages into the handoff's Chatwoot conversation."""
    if handoff.chatwoot_conversation_id is None or not chatwoot.configured(app):
        return 0
    client = Chatwoot(app)
    posted = 0
    for text in texts:
        message_id = await client.post(
            handoff.chatwoot_conversation_id, text, message_type="incoming"
        )
        await _posted(app, handoff.id, message_id)
        posted += 1
    return posted


async def close(app: App, handoff: Handoff) -> None:
    """Best effort after an operator gave it back from the CLI: drop the label, resolve."""
    if handoff.chatwoot_conversation_id is None or not chatwoot.configured(app):
        return
    client = Chatwoot(app)
    try:
        await client.remove_label(handoff.chatwoot_conversation_id, app.settings.handoff_label)
        await client.toggle_status(handoff.chatwoot_conversation_id, "resolved")
    except Exception as exc:  # Júlia has control again either way; the operator can close it
        log.warning(
            "handoff.chatwoot_close_failed",
            handoff_id=handoff.id,
            error=type(exc).__name__,
            telefone=mask_phone(handoff.telefone),
        )
