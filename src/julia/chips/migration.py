"""Moving a demoted, banned or retired chip's active conversations to other chips.

Each conversation keeps its row (and so its history, summary and context) and only
changes ``conversas.chip_id``; the move is a ``chip_migrations`` row; the doctor's
affinity moves to the new chip; a conversation with activity in the last
``JULIA_CHIP_MIGRATION_RECENT_H`` hours gets a continuation message queued, which
the selection sends from the conversation's new chip. A doctor gets one such message
per ``JULIA_CHIP_MIGRATION_NOTICE_WINDOW_H``: a second move in the window (chip 1 → 3,
then 3 → 2) keeps the one still queued — the selection sends it from the chip that
holds the conversation when it goes out — and queues none after one was sent.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection

from julia.core import audit
from julia.core.app import App
from julia.core.logs import get_logger
from julia.fila.queue import NewMessage, enqueue

log = get_logger(__name__)


@dataclass(frozen=True)
class Migrated:
    id: int
    conversa_id: int
    medico_id: int
    from_chip: int
    to_chip: int | None
    continuacao_id: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# The target: an active chip (ready as a last resort) that is usable now, preferring the
# chip the doctor already talks to, then the one with the fewest active conversations.
_TARGET = """
SELECT c.id FROM chips c
LEFT JOIN chip_afinidade a ON a.chip_id = c.id AND a.medico_id = %(medico)s
WHERE c.id <> %(from)s AND c.status IN ('active', 'ready')
  AND c.connected IS NOT FALSE
  AND (c.cooldown_until IS NULL OR c.cooldown_until <= %(now)s)
  AND c.trust_score >= %(min_trust)s
ORDER BY (c.status = 'active') DESC, coalesce(a.respostas, 0) DESC,
         (SELECT count(*) FROM conversas v WHERE v.chip_id = c.id AND v.status = 'ativa'), c.id
LIMIT 1
"""


async def migrate_conversations(
    app: App, from_chip: int, *, motivo: str, actor: audit.Actor | None = None
) -> list[Migrated]:
    """Move every active conversation of ``from_chip``; returns the moves made."""
    actor = actor or audit.AUTOMATION
    now = app.clock.now()
    moves: list[Migrated] = []
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT v.id, v.medico_id, v.last_message_at, m.telefone FROM conversas v"
            " JOIN medicos m ON m.id = v.medico_id"
            " WHERE v.chip_id = %s AND v.status = 'ativa' ORDER BY v.id",
            (from_chip,),
        )
        conversas = list(await cur.fetchall())
    for v in conversas:
        async with app.pool.connection() as conn, conn.transaction():
            moves.append(await _move_one(app, conn, v, from_chip, motivo, actor, now))
    if moves:
        log.warning(
            "chip.conversations_migrated", from_chip=from_chip, count=len(moves),
            unplaced=sum(1 for m in moves if m.to_chip is None), motivo=motivo,
        )  # fmt: skip
    return moves


async def _move_one(
    app: App,
    conn: AsyncConnection[Any],
    v: dict[str, Any],
    from_chip: int,
    motivo: str,
    actor: audit.Actor,
    now: datetime,
) -> Migrated:
    min_trust = max(0, app.settings.chip_threshold_resposta - app.settings.chip_emergency_drop)
    cur = await conn.execute(
        _TARGET, {"medico": v["medico_id"], "from": from_chip, "now": now, "min_trust": min_trust}
    )
    row = await cur.fetchone()
    to_chip = int(row["id"]) if row else None
    await conn.execute(
        "UPDATE conversas SET chip_id = %s, updated_at = %s WHERE id = %s", (to_chip, now, v["id"])
    )
    if to_chip is not None:
        await conn.execute(
            "INSERT INTO chip_afinidade (medico_id, chip_id, enviadas, respostas, last_at)"
            " SELECT %(medico)s, %(to)s, coalesce(sum(a.enviadas), 0),"
            " coalesce(sum(a.respostas), 0) + (SELECT count(*) FROM mensagens_recebidas r"
            "   JOIN chips c ON c.instance = r.instance WHERE c.id = %(from)s"
            "   AND r.telefone = %(tel)s AND r.kind = 'mensagem' AND NOT r.from_me),"
            " %(now)s FROM chip_afinidade a WHERE a.medico_id = %(medico)s"
            " AND a.chip_id = %(from)s"
            " ON CONFLICT (medico_id, chip_id) DO UPDATE SET"
            " enviadas = chip_afinidade.enviadas + EXCLUDED.enviadas,"
            " respostas = chip_afinidade.respostas + EXCLUDED.respostas,"
            " last_at = EXCLUDED.last_at",
            {
                "medico": v["medico_id"],
                "to": to_chip,
                "from": from_chip,
                "now": now,
                "tel": v["telefone"],
            },
        )
        await conn.execute(
            "DELETE FROM chip_afinidade WHERE medico_id = %s AND chip_id = %s",
            (v["medico_id"], from_chip),
        )
    cur = await conn.execute(
        "INSERT INTO chip_migrations (conversa_id, medico_id, from_chip, to_chip, motivo, ator, at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (v["id"], v["medico_id"], from_chip, to_chip, motivo, actor.name, now),
    )
    mig = await cur.fetchone()
    assert mig is not None
    continuacao = None
    recent = now - timedelta(hours=app.settings.chip_migration_recent_h)
    if v["last_message_at"] is not None and v["last_message_at"] >= recent:
        continuacao = await _schedule_continuation(app, conn, v, int(mig["id"]), now)
        await conn.execute(
            "UPDATE chip_migrations SET continuacao_id = %s WHERE id = %s", (continuacao, mig["id"])
        )
    return Migrated(int(mig["id"]), v["id"], v["medico_id"], from_chip, to_chip, continuacao)


async def _schedule_continuation(
    app: App, conn: AsyncConnection[Any], v: dict[str, Any], migration_id: int, now: datetime
) -> int | None:
    """Queue the continuation message in the caller's transaction: at most one per doctor
    in the notice window (an earlier one still queued or already sent stands)."""
    since = now - timedelta(hours=app.settings.chip_migration_notice_window_h)
    cur = await conn.execute(
        "SELECT id, status FROM fila_mensagens WHERE medico_id = %s AND created_at >= %s"
        " AND idempotency_key LIKE 'chip-migration:%%'"
        " AND status IN ('pendente', 'processando', 'enviada', 'incerta')"
        " ORDER BY id DESC LIMIT 1",
        (v["medico_id"], since),
    )
    earlier = await cur.fetchone()
    if earlier is not None:
        log.info("chip.continuation_kept", medico_id=v["medico_id"], mensagem_id=earlier["id"],
                 status=earlier["status"])  # fmt: skip
        return int(earlier["id"]) if earlier["status"] == "pendente" else None
    queued = await enqueue(
        app,
        NewMessage(
            texto=app.settings.chip_migration_texto, tipo="resposta", medico_id=v["medico_id"],
            conversa_id=v["id"], prioridade=8, idempotency_key=f"chip-migration:{migration_id}",
        ),
        conn=conn,
    )  # fmt: skip
    return queued.id


async def list_migrations(
    app: App, chip_id: int | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT * FROM chip_migrations WHERE %(c)s::bigint IS NULL OR from_chip = %(c)s"
            " OR to_chip = %(c)s ORDER BY id DESC LIMIT %(limit)s",
            {"c": chip_id, "limit": limit},
        )
        return list(await cur.fetchall())
