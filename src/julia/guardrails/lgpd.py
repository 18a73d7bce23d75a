"""LGPD: export everything Júlia holds about a doctor, or erase it everywhere.

Where a doctor's personal data lives (one list, so a new table is one line here):
the doctor row (profile, preferences, consent), conversations and their interactions,
inbox turns, the raw inbox (messages received, acks and their payloads), queue rows
(and their transition log), chip events, selections, affinity and migrations,
rate-limit events and overrides, business events, manual blocks, consent history and
the audit log's rows about them. Erasure deletes those rows (the audit rows keep the
action but lose the phone) and keeps only a keyed hash of the phone in
``medicos_esquecidos``, which the guardrails check before anything is sent.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from julia.core import audit, phones
from julia.core.app import App
from julia.core.errors import Conflict, InvalidInput, NotFound
from julia.core.logs import get_logger
from julia.core.redact import mask_phone
from julia.guardrails.rules import phone_hash

log = get_logger(__name__)

# (name, query) for the export; %(mid)s the doctor's id, %(tel)s the phone, %(dig)s its digits.
EXPORT: tuple[tuple[str, str], ...] = (
    ("perfil", "SELECT m.*, e.nome AS especialidade FROM medicos m"
               " LEFT JOIN especialidades e ON e.id = m.especialidade_id WHERE m.id = %(mid)s"),
    ("consentimentos", "SELECT acao, motivo, operador, at FROM medicos_consentimentos"
                       " WHERE medico_id = %(mid)s ORDER BY id"),
    ("bloqueios", "SELECT * FROM guardrail_bloqueios WHERE medico_id = %(mid)s ORDER BY id"),
    ("conversas", "SELECT * FROM conversas WHERE medico_id = %(mid)s ORDER BY id"),
    ("interacoes", "SELECT * FROM interacoes WHERE medico_id = %(mid)s ORDER BY created_at, id"),
    ("turnos", "SELECT * FROM inbox_turnos WHERE medico_id = %(mid)s ORDER BY id"),
    ("mensagens_recebidas", "SELECT * FROM mensagens_recebidas WHERE telefone = %(tel)s"
                            " OR remote_jid LIKE %(dig)s || '@%%' ORDER BY id"),
    ("mensagens", "SELECT * FROM fila_mensagens WHERE medico_id = %(mid)s OR telefone = %(tel)s"
                  " ORDER BY id"),
    ("chip_afinidade", "SELECT * FROM chip_afinidade WHERE medico_id = %(mid)s"),
    ("business_events", "SELECT * FROM business_events WHERE medico_id = %(mid)s ORDER BY id"),
    ("rate_limit_overrides", "SELECT * FROM rate_limit_overrides WHERE telefone = %(tel)s"),
    ("auditoria", "SELECT at, operador, acao, motivo, detalhes FROM audit_log"
                  " WHERE alvo = %(tel)s ORDER BY id"),
)  # fmt: skip

# Erasure, in an order the foreign keys allow. Each statement's row count is reported.
ERASE: tuple[tuple[str, str], ...] = (
    ("interacoes", "DELETE FROM interacoes WHERE medico_id = %(mid)s"),
    ("inbox_turnos", "DELETE FROM inbox_turnos WHERE medico_id = %(mid)s"
                     " OR conversa_id IN (SELECT id FROM conversas WHERE medico_id = %(mid)s)"),
    ("mensagens_recebidas", "DELETE FROM mensagens_recebidas WHERE telefone = %(tel)s"
                            " OR remote_jid LIKE %(dig)s || '@%%'"),
    ("mensagens_acks", "DELETE FROM mensagens_acks WHERE remote_jid LIKE %(dig)s || '@%%'"
                       " OR provider_message_id IN (SELECT provider_message_id FROM fila_mensagens"
                       " WHERE (medico_id = %(mid)s OR telefone = %(tel)s)"
                       " AND provider_message_id IS NOT NULL)"),
    ("chip_eventos", "DELETE FROM chip_eventos WHERE telefone = %(tel)s OR mensagem_id IN"
                     " (SELECT id FROM fila_mensagens WHERE medico_id = %(mid)s"
                     " OR telefone = %(tel)s)"),
    ("chip_selection_log", "DELETE FROM chip_selection_log WHERE telefone = %(tel)s"),
    ("chip_migrations", "DELETE FROM chip_migrations WHERE medico_id = %(mid)s"),
    ("chip_afinidade", "DELETE FROM chip_afinidade WHERE medico_id = %(mid)s"),
    ("fila_mensagens", "DELETE FROM fila_mensagens WHERE medico_id = %(mid)s"
                       " OR telefone = %(tel)s"),
    ("conversas", "DELETE FROM conversas WHERE medico_id = %(mid)s"),
    ("business_events", "DELETE FROM business_events WHERE medico_id = %(mid)s"),
    ("rate_limit_events", "DELETE FROM rate_limit_events WHERE telefone = %(tel)s"),
    ("rate_limit_overrides", "DELETE FROM rate_limit_overrides WHERE telefone = %(tel)s"),
    ("guardrail_bypasses", "UPDATE guardrail_bypasses SET medico_id = NULL"
                           " WHERE medico_id = %(mid)s"),
    ("audit_log", "UPDATE audit_log SET alvo = %(forgotten)s,"
                  " motivo = CASE WHEN acao LIKE 'medicos.%%' THEN NULL ELSE motivo END"
                  " WHERE alvo = %(tel)s"),
    ("medicos", "DELETE FROM medicos WHERE id = %(mid)s"),
)  # fmt: skip


async def _doctor(conn: AsyncConnection[Any], telefone: str) -> tuple[int, str]:
    phone = phones.normalize(telefone)
    cur = await conn.execute("SELECT id FROM medicos WHERE telefone = %s", (phone,))
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no doctor with phone {mask_phone(phone)}")
    return int(row["id"]), phone


def _params(mid: int, phone: str) -> dict[str, Any]:
    return {"mid": mid, "tel": phone, "dig": phones.digits(phone)}


async def exportar(app: App, telefone: str, *, actor: audit.Actor) -> dict[str, Any]:
    """Everything held about a doctor, section by section (the access is audited)."""
    now = app.clock.now()
    async with app.pool.connection() as conn, conn.transaction():
        mid, phone = await _doctor(conn, telefone)
        out: dict[str, Any] = {"telefone": phone, "exportado_em": now}
        for name, sql in EXPORT:
            cur = await conn.execute(sql, _params(mid, phone))
            rows = [dict(r) for r in await cur.fetchall()]
            out[name] = rows[0] if name == "perfil" else rows
        await audit.record(conn, now, actor, "medicos.exportar", alvo=phone)
    return out


async def esquecer(app: App, telefone: str, *, motivo: str, actor: audit.Actor) -> dict[str, Any]:
    """Erase a doctor everywhere, in one transaction; keep only the keyed phone hash."""
    if not (motivo or "").strip():
        raise InvalidInput("say why (--motivo): the request and its date")
    now = app.clock.now()
    async with app.pool.connection() as conn, conn.transaction():
        mid, phone = await _doctor(conn, telefone)
        cur = await conn.execute(
            "SELECT id, status FROM vagas WHERE reservada_por = %s ORDER BY id", (mid,)
        )
        held = list(await cur.fetchall())
        if held:
            raise Conflict(
                "the doctor holds vaga(s) "
                + ", ".join(f"{v['id']} ({v['status']})" for v in held)
                + ": release or reassign them first"
            )
        h = phone_hash(app, phone)
        params = _params(mid, phone) | {"forgotten": f"esquecido:{h[:16]}"}
        removed: dict[str, int] = {}
        for name, sql in ERASE:
            cur = await conn.execute(sql, params)
            removed[name] = cur.rowcount
        await conn.execute(
            "INSERT INTO medicos_esquecidos (telefone_hash, motivo, operador, at)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (telefone_hash) DO NOTHING",
            (h, motivo, actor.name, now),
        )
        await audit.record(conn, now, actor, "medicos.esquecer", alvo=f"esquecido:{h[:16]}",
                           motivo=motivo, detalhes={"removed": removed})  # fmt: skip
    await _forget_redis(app, phone)
    log.info("medicos.esquecido", hash=h[:16], rows=sum(removed.values()))
    return {"hash": h[:16], "removed": removed}


async def _forget_redis(app: App, phone: str) -> None:
    """The rate-limit windows and the WhatsApp-number cache keyed by the phone."""
    keys = [app.keys.key("rl", "medico", phone), app.keys.key("rl", "override", phone)]
    try:
        await app.redis.delete(*keys)
        async for k in app.redis.scan_iter(match=app.keys.key("wa", "exists", "*",
                                                               phones.digits(phone))):  # fmt: skip
            await app.redis.delete(k)
    except Exception as exc:  # the windows expire within 24 h; the cache holds no name
        log.warning("medicos.esquecer_redis_failed", error=str(exc))
