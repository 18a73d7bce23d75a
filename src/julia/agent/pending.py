"""Turns recorded without a reply: those that got the out-of-hours acknowledgement
(``agendado``, answered once business hours open) and those that waited for a model
(``aguardando_resposta``). Also the ``agent.unanswered`` check behind ``julia health``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from julia.agent.turn import Outcome, Superseded, TurnInput, answer, ready
from julia.core.app import App
from julia.core.logs import get_logger
from julia.notify import alerts
from julia.notify.alerts import Raised

log = get_logger(__name__)

#: Sends the opt-out confirmation straight through the chip (the inbox supplies it).
Direct = Callable[[App, int, str], Awaitable[Any]]

_DUE = """
SELECT t.id, t.conversa_key, t.conversa_id, t.medico_id, t.mensagens, t.texto
FROM inbox_turnos t
WHERE t.conversa_id IS NOT NULL AND t.medico_id IS NOT NULL
  AND ((t.status = 'aguardando_resposta' AND t.created_at >= %(stale)s)
       OR (t.status = 'agendado' AND t.responder_apos <= %(now)s
           AND t.responder_apos >= %(stale)s))
ORDER BY t.conversa_id, t.id
LIMIT %(n)s
"""
#: A turn older than this is not answered late (a reply days after would confuse): it
#: stays unanswered, for an operator (agent.unanswered, julia conversas list).
STALE = timedelta(hours=24)


@dataclass(frozen=True)
class Answered:
    conversas: int
    turnos: int


async def answer_due(app: App, *, limit: int = 50) -> Answered:
    """Answer every due turn, one reply per conversation (its due turns merged)."""
    if not ready(app):
        return Answered(0, 0)
    async with app.pool.connection() as conn:
        now = app.clock.now()
        cur = await conn.execute(_DUE, {"now": now, "stale": now - STALE, "n": limit})
        rows = list(await cur.fetchall())
    by_conversa: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        by_conversa.setdefault(r["conversa_id"], []).append(r)
    for turns in by_conversa.values():
        ids = tuple(i for t in turns for i in t["mensagens"])
        async with app.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT provider_message_id FROM mensagens_recebidas WHERE id = ANY(%s)",
                (list(ids),),
            )
            pmids = tuple(r["provider_message_id"] for r in await cur.fetchall())
        inp = TurnInput(
            conversa_id=turns[0]["conversa_id"], medico_id=turns[0]["medico_id"],
            conversa_key=turns[0]["conversa_key"], mensagem_ids=ids,
            texto="\n".join(t["texto"] for t in turns if t["texto"]), provider_ids=pmids,
        )  # fmt: skip
        try:
            outcome: Outcome | None = await answer(app, inp)
        except Superseded:  # a newer turn of this conversation will answer with history
            outcome = None
        await _mark(app, [t["id"] for t in turns], outcome)
    return Answered(len(by_conversa), len(rows))


async def _mark(app: App, turn_ids: list[int], outcome: Outcome | None) -> None:
    resposta = outcome.resposta if outcome else None
    async with app.pool.connection() as conn:
        await conn.execute(
            "UPDATE inbox_turnos SET status = 'respondido', resposta = COALESCE(%s, resposta),"
            " respondido_em = %s, detalhes = detalhes || jsonb_build_object('agente', %s::text)"
            " WHERE id = ANY(%s)",
            (resposta, app.clock.now(), outcome.status if outcome else "superseded", turn_ids),
        )


async def unanswered(app: App) -> tuple[int, float | None]:
    """Turns waiting longer than ``agent_unanswered_min``: how many, the oldest (minutes)."""
    now = app.clock.now()
    cut = now - timedelta(minutes=app.settings.agent_unanswered_min)
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n, min(COALESCE(responder_apos, created_at)) AS oldest"
            " FROM inbox_turnos WHERE (status = 'aguardando_resposta' AND created_at <= %s)"
            " OR (status = 'agendado' AND responder_apos <= %s)",
            (cut, cut),
        )
        row = await cur.fetchone()
    n = int(row["n"]) if row else 0
    oldest = (now - row["oldest"]).total_seconds() / 60 if row and row["oldest"] else None
    return n, oldest


async def check_unanswered(app: App) -> list[Raised]:
    n, oldest = await unanswered(app)
    if not n:
        return []
    why = "" if ready(app) else "; " + "no model configured"
    raised = await alerts.raise_alert(
        app, "agent.unanswered",
        f"{n} doctor turn(s) waiting over {app.settings.agent_unanswered_min:g} min for"
        f" Júlia's reply (oldest {oldest or 0:.0f} min){why}: julia health, julia conversas list",
        details={"turnos": n, "oldest_min": round(oldest or 0, 1)},
    )  # fmt: skip
    return [raised]
