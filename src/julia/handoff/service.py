"""The handoff's public API: what the processors, the agent, the CLI and jobs call.

    h = await handoff.request(app, conversa_id=7, reason="pediu: atendente", trigger="keyword")
    if await handoff.is_human(app, 7): ...
    if not await handoff.still_julia(app, 7): ...   # the agent, after the model, before queuing

The summary: ``summary`` text, or a ``summarizer(lines, reason)`` (the agent's cheaper
model), else :func:`julia.handoff.history.digest` (deterministic, the last messages).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from julia.core import audit, metrics, phones
from julia.core.app import App
from julia.core.errors import InvalidTransition, NotFound
from julia.core.logs import get_logger
from julia.core.redact import mask_phone
from julia.handoff import announce, control, history
from julia.handoff.control import Handoff
from julia.handoff.history import Line, Summarizer
from julia.notify import alerts
from julia.notify.alerts import Raised

log = get_logger(__name__)

controlled_by = control.controlled_by
is_human = control.is_human


async def request(
    app: App,
    *,
    conversa_id: int,
    reason: str,
    trigger: str,
    actor: str = "julia",
    summary: str | None = None,
    summarizer: Summarizer | None = None,
    recent: Sequence[Line] = (),
    take: bool = False,
    notify: bool = True,
) -> Handoff:
    """Hand the conversation to a person (``take``: a person already answers). Idempotent:
    a conversation with an open handoff keeps it (returned with ``new=False``). Control is
    committed before anyone is told, so Chatwoot and Slack down never undo it."""
    h = await control.open_or_take(
        app, conversa_id=conversa_id, reason=reason, trigger=trigger, actor=actor, take=take
    )
    if not h.new:
        return h
    metrics.HANDOFFS.labels(trigger).inc()
    lines = await history.lines(
        app, conversa_id, limit=app.settings.handoff_history_limit, recent=recent
    )
    if summary is None:
        try:
            summary = summarizer(lines, reason) if summarizer else None
        except Exception as exc:  # a failing model must not cost the handoff its summary
            log.warning("handoff.summarizer_failed", error=type(exc).__name__)
        summary = summary or history.digest(lines, reason)
    async with app.pool.connection() as conn:
        await conn.execute("UPDATE handoffs SET summary = %s WHERE id = %s", (summary, h.id))
    h = Handoff(**{**h.__dict__, "summary": summary})
    log.info("handoff.requested", handoff_id=h.id, trigger=trigger, telefone=mask_phone(h.telefone))
    if notify:
        await announce.notify(app, h, await _nome(app, h.medico_id), lines)
    return Handoff(**{**(await control.get(app, h.id)).__dict__, "new": True})


async def _nome(app: App, medico_id: int) -> str:
    async with app.pool.connection() as conn:
        cur = await conn.execute("SELECT nome FROM medicos WHERE id = %s", (medico_id,))
        row = await cur.fetchone()
    return str(row["nome"]) if row else "Médico"


async def still_julia(app: App, conversa_id: int) -> bool:
    """The check before Júlia's reply is queued: False (and the reply counted as dropped)
    when a person took the conversation while the model was answering."""
    if await control.controlled_by(app, conversa_id) == "julia":
        return True
    metrics.HANDOFF_REPLIES_DROPPED.inc()
    log.info("handoff.reply_dropped", conversa_id=conversa_id)
    return False


async def mirror_turn(app: App, conversa_id: int, texts: list[str]) -> int:
    """While a person is in control: the doctor's new messages into Chatwoot. A failure
    is alerted (the person would miss them), never fails the turn."""
    h = await control.open_for(app, conversa_id)
    if h is None or not texts:
        return 0
    try:
        return await announce.mirror(app, h, texts)
    except Exception as exc:
        log.error("handoff.mirror_failed", handoff_id=h.id, error=type(exc).__name__)
        await alerts.raise_alert(
            app,
            "handoff.mirror_failed",
            f"Handoff #{h.id} ({mask_phone(h.telefone)}): {len(texts)} message(s) from the doctor"
            f" not mirrored to Chatwoot ({type(exc).__name__}); julia handoff show {h.id}",
            key=f"handoff:{h.id}",
            details={"handoff_id": h.id},
        )
        return 0


# --- operators -------------------------------------------------------------------------


async def _conversa_of(app: App, telefone: str) -> int:
    numero = phones.normalize(telefone)
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT c.id FROM conversas c JOIN medicos m ON m.id = c.medico_id"
            " WHERE m.telefone = %s AND c.status = 'ativa'",
            (numero,),
        )
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no active conversation with {mask_phone(numero)}")
    return int(row["id"])


async def assumir(app: App, telefone: str, *, motivo: str, actor: audit.Actor) -> Handoff:
    """An operator takes the conversation (``julia handoff assumir``)."""
    conversa_id = await _conversa_of(app, telefone)
    h = await request(
        app, conversa_id=conversa_id, reason=motivo, trigger="operador", actor=actor.name, take=True
    )
    async with app.pool.connection() as conn:
        await audit.record(
            conn,
            app.clock.now(),
            actor,
            "handoff.assumir",
            f"handoff:{h.id}",
            motivo,
            {"conversa_id": conversa_id, "new": h.new},
        )
    return h


async def _give_back(app: App, h: Handoff, *, nota: str, actor: audit.Actor, acao: str) -> Handoff:
    async with app.pool.connection() as conn, conn.transaction():
        await control.release(
            app, conn, h.conversa_id, reason=f"{acao} pelo operador", actor=actor.name, note=nota
        )
        await audit.record(
            conn,
            app.clock.now(),
            actor,
            f"handoff.{acao}",
            f"handoff:{h.id}",
            nota,
            {"conversa_id": h.conversa_id},
        )
    await announce.close(app, h)
    return await control.get(app, h.id)


async def devolver(app: App, telefone: str, *, nota: str, actor: audit.Actor) -> Handoff:
    """Give a doctor's conversation back to Júlia (``julia handoff devolver``)."""
    conversa_id = await _conversa_of(app, telefone)
    h = await control.open_for(app, conversa_id)
    if h is None:
        raise NotFound(f"no open handoff with {mask_phone(phones.normalize(telefone))}")
    return await _give_back(app, h, nota=nota, actor=actor, acao="devolver")


async def resolver(app: App, handoff_id: int, *, nota: str, actor: audit.Actor) -> Handoff:
    """Mark a handoff resolved; Júlia has the conversation again (``julia handoff resolver``)."""
    h = await control.get(app, handoff_id)
    if h.status == "resolvido":
        raise InvalidTransition(f"handoff {handoff_id} is already resolvido")
    return await _give_back(app, h, nota=nota, actor=actor, acao="resolver")


# --- jobs ------------------------------------------------------------------------------


async def waiting(app: App) -> list[Raised]:
    """``handoff.waiting`` for each handoff nobody picked up in ``JULIA_HANDOFF_WAITING_MIN``
    (once per handoff), and one more try for those Chatwoot never got."""
    now = app.clock.now()
    cut = now.timestamp() - app.settings.handoff_waiting_min * 60
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "UPDATE handoffs SET waiting_alerted_at = %s WHERE status = 'pendente'"
            " AND waiting_alerted_at IS NULL AND created_at <= to_timestamp(%s)"
            " RETURNING id, created_at",
            (now, cut),
        )
        late = list(await cur.fetchall())
        # Also those whose first try never ran (the process died after the commit).
        cur = await conn.execute(
            "SELECT id FROM handoffs WHERE status <> 'resolvido' AND notified_at IS NULL"
            " AND notify_attempts <= 10 AND (notify_attempts > 0 OR created_at <= %s)"
            " ORDER BY id LIMIT 20",
            (now - timedelta(minutes=1),),
        )
        unnotified = [int(r["id"]) for r in await cur.fetchall()]
    raised: list[Raised] = []
    for r in late:
        h = await control.get(app, int(r["id"]))
        minutes = (now - r["created_at"]).total_seconds() / 60
        raised.append(
            await alerts.raise_alert(
                app,
                "handoff.waiting",
                f"Handoff #{h.id} ({mask_phone(h.telefone)}) waiting {minutes:.0f} min for a"
                f" person: {h.reason}. julia handoff show {h.id}",
                key=f"handoff:{h.id}",
                details={"handoff_id": h.id, "waiting_min": round(minutes)},
            )
        )
    for handoff_id in unnotified:
        h = await control.get(app, handoff_id)
        lines = await history.lines(app, h.conversa_id, limit=app.settings.handoff_history_limit)
        await announce.notify(app, h, await _nome(app, h.medico_id), lines)
    return raised


def public(h: Handoff) -> dict[str, Any]:
    """A handoff as operators see it: the phone masked."""
    return h.as_dict() | {"telefone": mask_phone(h.telefone)}
