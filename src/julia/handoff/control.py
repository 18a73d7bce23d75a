"""Who controls a conversation, and every change of it (``julia.handoff.states``).

    h = await control.request(app, conversa_id=7, reason="pediu: atendente", trigger="keyword")
    await control.controlled_by(app, 7)      # 'humano'
    await control.release(app, conversa_id=7, reason="resolvido no Chatwoot", actor="chatwoot")

Each change locks the conversation row, checks the transition table, updates
``conversas.controlled_by``, the handoff row and writes a ``handoff_transicoes`` row,
in one transaction. Telling Chatwoot and Slack happens after it commits
(``julia.handoff.announce``): the handoff holds even when nobody can be told.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from julia.core.app import App
from julia.core.errors import InvalidInput, NotFound
from julia.core.logs import get_logger
from julia.handoff import states
from julia.handoff.history import Line

log = get_logger(__name__)

_COLS = (
    "h.id, h.conversa_id, h.medico_id, m.telefone, h.status, h.reason, h.trigger, h.actor,"
    " h.summary, h.chatwoot_conversation_id, h.notified_at, h.notify_attempts, h.notify_error,"
    " h.resolution_note, h.created_at, h.taken_at, h.resolved_at, h.updated_at"
)


@dataclass(frozen=True)
class Handoff:
    """One row of ``handoffs`` (the telefone is the doctor's, unmasked: mask to show it)."""

    id: int
    conversa_id: int
    medico_id: int
    telefone: str
    status: str
    reason: str
    trigger: str
    actor: str
    summary: str | None
    chatwoot_conversation_id: int | None
    notified_at: datetime | None
    notify_attempts: int
    notify_error: str | None
    resolution_note: str | None
    created_at: datetime
    taken_at: datetime | None
    resolved_at: datetime | None
    updated_at: datetime
    #: True when this call opened it (False: the conversation already had one open).
    new: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "new"}


@dataclass(frozen=True)
class Moved:
    de: str
    para: str
    handoff_id: int | None


async def _get(conn: AsyncConnection[Any], where: str, args: Sequence[Any]) -> Handoff | None:
    cur = await conn.execute(
        f"SELECT {_COLS} FROM handoffs h JOIN medicos m ON m.id = h.medico_id WHERE {where}", args
    )
    row = await cur.fetchone()
    return Handoff(**row) if row else None


async def _state(conn: AsyncConnection[Any], conversa_id: int) -> tuple[str, dict[str, Any]]:
    """The conversation's state, its row locked for the change."""
    cur = await conn.execute(
        "SELECT c.id, c.medico_id, c.controlled_by, h.id AS handoff_id, h.status"
        " FROM conversas c LEFT JOIN handoffs h ON h.conversa_id = c.id"
        " AND h.status <> 'resolvido' WHERE c.id = %s FOR UPDATE OF c",
        (conversa_id,),
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no conversation with id {conversa_id}")
    if row["handoff_id"] is not None:
        return str(row["status"]), row
    # humano without a handoff row: set before handoffs existed; a person is in control.
    return (states.JULIA if row["controlled_by"] == "julia" else states.EM_ATENDIMENTO), row


async def transition(
    app: App,
    conn: AsyncConnection[Any],
    conversa_id: int,
    evento: str,
    *,
    reason: str,
    actor: str,
    trigger: str = "operador",
    summary: str | None = None,
    note: str | None = None,
) -> Moved:
    """Apply one event of the table inside the caller's transaction (the only place that
    writes ``conversas.controlled_by``)."""
    if not reason.strip():
        raise InvalidInput("a handoff change needs a reason")
    de, row = await _state(conn, conversa_id)
    para = states.next_state(de, evento)
    now = app.clock.now()
    handoff_id = row["handoff_id"]
    if de == states.JULIA:
        cur = await conn.execute(
            "INSERT INTO handoffs (conversa_id, medico_id, status, reason, trigger, actor,"
            " summary, created_at, taken_at, updated_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (
                conversa_id,
                row["medico_id"],
                para,
                reason,
                trigger,
                actor,
                summary,
                now,
                now if para == states.EM_ATENDIMENTO else None,
                now,
            ),
        )
        created = await cur.fetchone()
        assert created is not None
        handoff_id = created["id"]
    elif handoff_id is not None:
        await conn.execute(
            "UPDATE handoffs SET status = %s, updated_at = %s,"
            " taken_at = CASE WHEN %s = 'em_atendimento' THEN COALESCE(taken_at, %s)"
            " ELSE taken_at END,"
            " resolved_at = CASE WHEN %s = 'julia' THEN %s ELSE resolved_at END,"
            " resolution_note = CASE WHEN %s = 'julia' THEN %s ELSE resolution_note END"
            " WHERE id = %s",
            (
                "resolvido" if para == states.JULIA else para,
                now,
                para,
                now,
                para,
                now,
                para,
                note,
                handoff_id,
            ),
        )
    await conn.execute(
        "UPDATE conversas SET controlled_by = %s, updated_at = %s WHERE id = %s",
        (states.controlled_by(para), now, conversa_id),
    )
    await conn.execute(
        "INSERT INTO handoff_transicoes (conversa_id, handoff_id, de, para, evento, reason,"
        " actor, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (conversa_id, handoff_id, de, para, evento, reason, actor, now),
    )
    log.info(
        "handoff.transition",
        conversa_id=conversa_id,
        handoff_id=handoff_id,
        de=de,
        para=para,
        evento=evento,
        actor=actor,
    )
    return Moved(de, para, handoff_id)


async def controlled_by(app: App, conversa_id: int) -> str:
    """``'julia'`` or ``'humano'``, read now (the agent checks it again before queuing)."""
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT controlled_by FROM conversas WHERE id = %s", (conversa_id,)
        )
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no conversation with id {conversa_id}")
    return str(row["controlled_by"])


async def is_human(app: App, conversa_id: int) -> bool:
    return await controlled_by(app, conversa_id) == "humano"


async def open_for(
    app: App, conversa_id: int, conn: AsyncConnection[Any] | None = None
) -> Handoff | None:
    """The conversation's open handoff, if any."""
    if conn is not None:
        return await _get(conn, "h.conversa_id = %s AND h.status <> 'resolvido'", (conversa_id,))
    async with app.pool.connection() as own:
        return await _get(own, "h.conversa_id = %s AND h.status <> 'resolvido'", (conversa_id,))


async def get(app: App, handoff_id: int) -> Handoff:
    async with app.pool.connection() as conn:
        found = await _get(conn, "h.id = %s", (handoff_id,))
    if found is None:
        raise NotFound(f"no handoff with id {handoff_id}")
    return found


async def by_chatwoot(conn: AsyncConnection[Any], chatwoot_conversation_id: int) -> Handoff | None:
    """The open handoff of a Chatwoot conversation."""
    return await _get(
        conn,
        "h.chatwoot_conversation_id = %s AND h.status <> 'resolvido'",
        (chatwoot_conversation_id,),
    )


async def _adopt(
    app: App,
    conn: AsyncConnection[Any],
    row: dict[str, Any],
    *,
    reason: str,
    trigger: str,
    actor: str,
) -> Handoff:
    now = app.clock.now()
    cur = await conn.execute(
        "INSERT INTO handoffs (conversa_id, medico_id, status, reason, trigger, actor,"
        " created_at, taken_at, updated_at) VALUES (%s, %s, 'em_atendimento', %s, %s, %s, %s,"
        " %s, %s) RETURNING id",
        (row["id"], row["medico_id"], reason, trigger, actor, now, now, now),
    )
    created = await cur.fetchone()
    assert created is not None
    await conn.execute(
        "INSERT INTO handoff_transicoes (conversa_id, handoff_id, de, para, evento, reason,"
        " actor, created_at) VALUES (%s, %s, 'humano', 'em_atendimento', 'adotar', %s, %s, %s)",
        (row["id"], created["id"], reason, actor, now),
    )
    found = await _get(conn, "h.id = %s", (created["id"],))
    assert found is not None
    return found


async def open_or_take(
    app: App,
    *,
    conversa_id: int,
    reason: str,
    trigger: str,
    actor: str,
    take: bool,
    summary: str | None = None,
) -> Handoff:
    """Open a handoff (``take``: a person is already answering), or return the open one;
    a person taking a ``pendente`` one moves it to ``em_atendimento``."""
    async with app.pool.connection() as conn, conn.transaction():
        de, row = await _state(conn, conversa_id)
        new = de == states.JULIA
        if de != states.JULIA and row["handoff_id"] is None:
            # 'humano' set before handoffs existed, and nobody was ever told: adopt it as an
            # open handoff (control does not change, so no table move; recorded as 'adotar').
            adopted = await _adopt(app, conn, row, reason=reason, trigger=trigger, actor=actor)
            return Handoff(**{**adopted.__dict__, "new": True})
        if new or (take and de == states.PENDENTE):
            moved = await transition(
                app,
                conn,
                conversa_id,
                states.ASSUMIR if take else states.SOLICITAR,
                reason=reason,
                actor=actor,
                trigger=trigger,
                summary=summary,
            )
            found = await _get(conn, "h.id = %s", (moved.handoff_id,))
        else:
            found = await open_for(app, conversa_id, conn)
    if found is None:  # cannot happen: the row is locked and humano has a handoff here
        raise NotFound(f"conversation {conversa_id} has no open handoff")
    return Handoff(**{**found.__dict__, "new": new})


async def take(app: App, conn: AsyncConnection[Any], handoff: Handoff, *, actor: str) -> bool:
    """A person answered a ``pendente`` handoff: now ``em_atendimento``."""
    if handoff.status != states.PENDENTE:
        return False
    await transition(
        app,
        conn,
        handoff.conversa_id,
        states.ASSUMIR,
        reason="a person answered in Chatwoot",
        actor=actor,
    )
    return True


RETURN_NOTE = "[Atendimento humano encerrado; Júlia volta a conversar.]"


async def release(
    app: App,
    conn: AsyncConnection[Any],
    conversa_id: int,
    *,
    reason: str,
    actor: str,
    note: str | None = None,
) -> Moved:
    """Give control back to Júlia, leaving a note in the history the model reads: what
    the person said or promised is context for her next turn."""
    moved = await transition(
        app, conn, conversa_id, states.DEVOLVER, reason=reason, actor=actor, note=note
    )
    text = RETURN_NOTE + (f" Nota do atendente: {note.strip()}" if note and note.strip() else "")
    await conn.execute(
        "INSERT INTO interacoes (conversa_id, medico_id, direcao, tipo, conteudo, created_at)"
        " SELECT id, medico_id, 'saida', 'nota_handoff', %s, %s FROM conversas WHERE id = %s",
        (text, app.clock.now(), conversa_id),
    )
    return moved


async def record_human_message(
    app: App, conn: AsyncConnection[Any], handoff: Handoff, texto: str, ref: str
) -> None:
    """An operator's message sent to the doctor, kept in the history the model reads."""
    await conn.execute(
        "INSERT INTO interacoes (conversa_id, medico_id, direcao, tipo, conteudo,"
        " provider_message_id, created_at) VALUES (%s, %s, 'saida', 'humano', %s, %s, %s)",
        (handoff.conversa_id, handoff.medico_id, texto, ref, app.clock.now()),
    )


_LIST = f"""
SELECT {_COLS} FROM handoffs h JOIN medicos m ON m.id = h.medico_id
WHERE (%(s)s::text IS NULL OR h.status = %(s)s) ORDER BY h.id DESC LIMIT %(n)s
"""


async def list_handoffs(app: App, *, status: str | None = None, limit: int = 50) -> list[Handoff]:
    if status is not None and status not in ("pendente", "em_atendimento", "resolvido"):
        raise InvalidInput("status must be pendente, em_atendimento or resolvido")
    async with app.pool.connection() as conn:
        cur = await conn.execute(_LIST, {"s": status, "n": limit})
        return [Handoff(**r) for r in await cur.fetchall()]


async def transitions(app: App, conversa_id: int) -> list[dict[str, Any]]:
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, handoff_id, de, para, evento, reason, actor, created_at"
            " FROM handoff_transicoes WHERE conversa_id = %s ORDER BY id",
            (conversa_id,),
        )
        return list(await cur.fetchall())


def turn_lines(messages: Sequence[Any]) -> list[Line]:
    """A turn's messages (``julia.inbox`` Message-like) as history lines."""
    return [
        Line(
            "saida" if m.from_me else "entrada",
            m.texto or "",
            m.received_at,
            m.provider_message_id,
            m.tipo,
        )
        for m in messages
        if m.texto
    ]
