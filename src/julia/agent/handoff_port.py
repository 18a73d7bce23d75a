"""The agent's two doors out of a conversation: a person takes over, or the doctor opts out.

Today the handoff sets ``conversas.controlled_by = 'humano'`` and writes the business
event, as the inbox's handoff processors do. At merge it points at
``julia.handoff.request(...)`` (the handoff capability), which also tells Chatwoot.
"""

from __future__ import annotations

from psycopg.types.json import Jsonb

from julia.core import audit
from julia.core.app import App
from julia.core.logs import get_logger
from julia.domain import medicos
from julia.fila.queue import block_pending_for_medico

log = get_logger(__name__)


async def request_handoff(
    app: App, *, conversa_id: int, medico_id: int, reason: str, trigger: str
) -> None:
    """Hand the conversation to a person (idempotent: one event per conversation and trigger
    while it stays with the person)."""
    now = app.clock.now()
    async with app.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "UPDATE conversas SET controlled_by = 'humano', revisar = true, updated_at = %s"
            " WHERE id = %s AND controlled_by = 'julia' RETURNING id",
            (now, conversa_id),
        )
        if await cur.fetchone() is None:
            return  # already with a person
        await conn.execute(
            "INSERT INTO business_events (tipo, medico_id, props, created_at)"
            " VALUES ('handoff', %s, %s, %s)",
            (medico_id, Jsonb({"motivo": reason, "gatilho": trigger, "conversa_id": conversa_id}),
             now),
        )  # fmt: skip
    log.info("agent.handoff", conversa_id=conversa_id, trigger=trigger)


async def record_optout(app: App, *, medico_id: int, reason: str) -> int:
    """The doctor asked for no more messages: the same steps as the inbox's opt-out
    processor (``medicos.optout`` + block the queue + the business event)."""
    async with app.pool.connection() as conn:
        cur = await conn.execute("SELECT telefone FROM medicos WHERE id = %s", (medico_id,))
        row = await cur.fetchone()
    assert row is not None
    await medicos.optout(app, row["telefone"], motivo=reason, actor=audit.AUTOMATION)
    blocked = await block_pending_for_medico(app, medico_id, "opt-out: " + reason)
    async with app.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO business_events (tipo, medico_id, props, created_at)"
            " VALUES ('optout', %s, %s, %s)",
            (medico_id, Jsonb({"motivo": reason, "bloqueadas": blocked, "via": "agent"}),
             app.clock.now()),
        )  # fmt: skip
    return blocked
