"""The agent's two doors out of a conversation: a person takes over, or the doctor opts out.

A handoff goes through :func:`julia.handoff.request` (the state machine, Chatwoot, Slack,
never silent), with a summary written by the cheaper model when it answers in time; when
it does not (the model is what is failing, after repeated fallbacks), the handoff's own
digest of the last messages stands in.
"""

from __future__ import annotations

import asyncio

from psycopg.types.json import Jsonb

from julia import handoff
from julia.agent.context import SUMMARY_SYSTEM
from julia.core import audit
from julia.core.app import App
from julia.core.logs import get_logger
from julia.domain import medicos
from julia.fila.queue import block_pending_for_medico
from julia.llm.model import Request, anthropic_model

log = get_logger(__name__)

#: Seconds the summary may take before the handoff goes on with the digest.
SUMMARY_TIMEOUT_S = 10.0


async def _summary(app: App, conversa_id: int, reason: str) -> str | None:
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT direcao, conteudo FROM interacoes WHERE conversa_id = %s"
            " ORDER BY created_at DESC, id DESC LIMIT 30",
            (conversa_id,),
        )
        rows = list(reversed(await cur.fetchall()))
    if not rows:
        return None
    lines = [f"{'Médico' if r['direcao'] == 'entrada' else 'Júlia'}: {r['conteudo']}" for r in rows]
    request = Request(
        system=SUMMARY_SYSTEM,
        messages=[{"role": "user", "content": "\n".join(lines) + f"\n\nMotivo: {reason}"}],
        model=app.settings.llm_summary_model, max_tokens=300,
    )  # fmt: skip
    try:
        response = await asyncio.wait_for(anthropic_model(app).create(request), SUMMARY_TIMEOUT_S)
    except Exception as exc:  # the handoff must not wait on, or fail with, the model
        log.warning("agent.handoff_summary_failed", conversa_id=conversa_id, error=str(exc))
        return None
    return response.text or None


async def request_handoff(
    app: App,
    *,
    conversa_id: int,
    medico_id: int,
    reason: str,
    trigger: str,
    summarize: bool = True,
) -> None:
    """Hand the conversation to a person (idempotent: asking again returns the open
    handoff); marked for review. ``summarize=False`` when the model is what failed."""
    summary = await _summary(app, conversa_id, reason) if summarize else None
    opened = await handoff.request(
        app, conversa_id=conversa_id, reason=reason, trigger=trigger, summary=summary
    )
    async with app.pool.connection() as conn:
        await conn.execute("UPDATE conversas SET revisar = true WHERE id = %s", (conversa_id,))
    log.info("agent.handoff", conversa_id=conversa_id, trigger=trigger, handoff=opened.id,
             medico_id=medico_id)  # fmt: skip


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
