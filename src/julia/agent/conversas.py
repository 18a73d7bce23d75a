"""Conversations for operators: the list, and one doctor's thread with each turn's tool
calls, guardrail decisions and fallbacks (``julia conversas list|show``)."""

from __future__ import annotations

from typing import Any

from julia.core import phones
from julia.core.app import App
from julia.core.errors import InvalidInput, NotFound

STATUSES = ("ativa", "encerrada", "revisar", "humano")


async def list_conversas(
    app: App, *, status: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status {status!r} is not one of {', '.join(STATUSES)}")
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT c.id, m.telefone, m.nome, c.status, c.controlled_by, c.revisar,"
            " c.last_message_at, (SELECT count(*) FROM agent_turnos a WHERE a.conversa_id = c.id)"
            " AS turnos FROM conversas c JOIN medicos m ON m.id = c.medico_id"
            " WHERE %(s)s::text IS NULL OR c.status = %(s)s OR (%(s)s = 'revisar' AND c.revisar)"
            " OR (%(s)s = 'humano' AND c.controlled_by = 'humano')"
            " ORDER BY c.last_message_at DESC NULLS LAST, c.id DESC LIMIT %(n)s",
            {"s": status, "n": limit},
        )
        return list(await cur.fetchall())


async def show(app: App, telefone: str, *, limit: int = 50) -> dict[str, Any]:
    """The doctor's latest conversation: messages and the agent's turns, oldest first."""
    phone = phones.normalize(telefone)
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT c.id, m.id AS medico_id, m.nome, m.telefone, m.opted_out, c.status,"
            " c.controlled_by, c.revisar, c.resumo FROM conversas c JOIN medicos m"
            " ON m.id = c.medico_id WHERE m.telefone = %s ORDER BY c.id DESC LIMIT 1",
            (phone,),
        )
        conversa = await cur.fetchone()
        if conversa is None:
            raise NotFound(f"no conversation with {telefone}")
        cur = await conn.execute(
            "SELECT direcao, conteudo, created_at FROM interacoes WHERE conversa_id = %s"
            " ORDER BY created_at DESC, id DESC LIMIT %s",
            (conversa["id"], limit),
        )
        mensagens = list(reversed(await cur.fetchall()))
        cur = await conn.execute(
            "SELECT id, status, texto, resposta, tool_calls, guardrails, usage, motivo,"
            " duracao_ms, created_at FROM agent_turnos WHERE conversa_id = %s"
            " ORDER BY id DESC LIMIT %s",
            (conversa["id"], limit),
        )
        turnos = list(reversed(await cur.fetchall()))
    return {**conversa, "mensagens": mensagens, "turnos": turnos}
