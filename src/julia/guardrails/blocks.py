"""Manual blocks (``julia guardrails block|unblock``) and renewed consent (``medicos optin``)."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from julia.core import audit, phones
from julia.core.app import App
from julia.core.errors import Conflict, InvalidInput, NotFound
from julia.core.redact import mask_phone


async def _medico(conn: AsyncConnection[Any], telefone: str) -> dict[str, Any]:
    phone = phones.normalize(telefone)
    cur = await conn.execute(
        "SELECT id, telefone, nome, opted_out FROM medicos WHERE telefone = %s FOR UPDATE",
        (phone,),
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no doctor with phone {telefone}")
    return dict(row)


def _reason(motivo: str) -> str:
    if not (motivo or "").strip():
        raise InvalidInput("say why (--motivo); it is recorded with your name")
    return motivo.strip()


async def block(app: App, telefone: str, *, motivo: str, actor: audit.Actor) -> dict[str, Any]:
    """Block a doctor by hand: no message goes to them until :func:`unblock`. Idempotent."""
    motivo = _reason(motivo)
    now = app.clock.now()
    async with app.pool.connection() as conn, conn.transaction():
        m = await _medico(conn, telefone)
        cur = await conn.execute(
            "INSERT INTO guardrail_bloqueios (medico_id, motivo, operador, criado_em)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (medico_id) WHERE removido_em IS NULL"
            " DO NOTHING RETURNING id",
            (m["id"], motivo, actor.name, now),
        )
        created = await cur.fetchone() is not None
        if created:
            await audit.record(conn, now, actor, "guardrails.block", alvo=m["telefone"],
                               motivo=motivo)  # fmt: skip
    return {"medico_id": m["id"], "telefone": m["telefone"], "blocked": True, "created": created}


async def unblock(app: App, telefone: str, *, motivo: str, actor: audit.Actor) -> dict[str, Any]:
    """Lift a doctor's manual block (who, when and why kept on the block row)."""
    motivo = _reason(motivo)
    now = app.clock.now()
    async with app.pool.connection() as conn, conn.transaction():
        m = await _medico(conn, telefone)
        cur = await conn.execute(
            "UPDATE guardrail_bloqueios SET removido_em = %s, removido_por = %s,"
            " removido_motivo = %s WHERE medico_id = %s AND removido_em IS NULL RETURNING id",
            (now, actor.name, motivo, m["id"]),
        )
        if await cur.fetchone() is None:
            raise Conflict(f"the doctor {mask_phone(m['telefone'])} is not blocked")
        await audit.record(conn, now, actor, "guardrails.unblock", alvo=m["telefone"],
                           motivo=motivo)  # fmt: skip
    return {"medico_id": m["id"], "telefone": m["telefone"], "blocked": False}


async def optin(app: App, telefone: str, *, motivo: str, actor: audit.Actor) -> dict[str, Any]:
    """Record a renewed consent, undoing an opt-out (e.g. a mistyped "pare").

    Only an operator may: the automation actor (the agent, jobs) is refused, so the
    model can never re-open a doctor who asked to stop.
    """
    motivo = _reason(motivo)
    if actor == audit.AUTOMATION or not actor.name.strip():
        raise InvalidInput("only a named operator may record a renewed consent (--operador)")
    now = app.clock.now()
    async with app.pool.connection() as conn, conn.transaction():
        m = await _medico(conn, telefone)
        if not m["opted_out"]:
            raise Conflict(f"the doctor {mask_phone(m['telefone'])} has not opted out")
        await conn.execute(
            "UPDATE medicos SET opted_out = false, opted_out_em = NULL, opted_out_motivo = NULL,"
            " updated_at = %s WHERE id = %s",
            (now, m["id"]),
        )
        await conn.execute(
            "INSERT INTO medicos_consentimentos (medico_id, acao, motivo, operador, at)"
            " VALUES (%s, 'optin', %s, %s, %s)",
            (m["id"], motivo, actor.name, now),
        )
        await audit.record(conn, now, actor, "medicos.optin", alvo=m["telefone"], motivo=motivo)
    return {"medico_id": m["id"], "telefone": m["telefone"], "opted_out": False}
