"""Whether a doctor may be contacted now, for a message type, and why not: every rule once.

Hard rules (the message must not go; evaluated in SQL so one statement screens one doctor,
a claimed batch or a 100,000-doctor segment alike):

=================  ==========================================  ================================
rule               applies to                                   what it means
=================  ==========================================  ================================
optout             every type                                   the doctor asked to stop
esquecido          every type                                   erased under LGPD (hashed phone)
bloqueio_manual    every type                                   an operator blocked the doctor
controle_humano    resposta, followup, prospeccao, campanha     a human runs the conversation
limite_contato     campanha, prospeccao                         any message sent in the last
                                                                ``guardrails_contact_cap_days``
=================  ==========================================  ================================

Soft rules (the message waits; the rate limiter enforces them at send time and reschedules):
``limite_diario`` (the doctor's proactive messages in 24 h) and ``horario_comercial``
(proactive messages only in business hours). :func:`check` reports both.

The contact cap is on unless the ``app_settings`` key ``guardrails.contact_cap`` holds
``{"enabled": false}``; turning it off is a bypass (:func:`set_contact_cap`). A caller
that knowingly skips a rule passes it in ``bypass`` and records a
``guardrail_bypasses`` row (:func:`record_bypass`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from julia.core import audit, erased, phones
from julia.core.app import App
from julia.core.errors import InvalidInput
from julia.resilience import ratelimit
from julia.resilience.hours import BusinessHours

HARD = ("optout", "esquecido", "bloqueio_manual", "controle_humano", "limite_contato")
SOFT = ("limite_diario", "horario_comercial")
RULES = HARD + SOFT
#: Types Júlia writes herself (a human in control silences them).
JULIA_TIPOS = ("resposta", "followup", "prospeccao", "campanha")
#: First contacts, under the contact cap.
CAPPED_TIPOS = ("campanha", "prospeccao")
#: Under the daily limit and business hours (as :data:`julia.resilience.ratelimit.TIPOS`).
PROACTIVE_TIPOS = tuple(t for t, p in ratelimit.TIPOS.items() if p)
CONTACT_CAP_KEY = "guardrails.contact_cap"

EXPLAIN = {
    "optout": "the doctor opted out",
    "esquecido": "the doctor was erased under LGPD",
    "bloqueio_manual": "an operator blocked the doctor",
    "controle_humano": "a human controls the conversation",
    "limite_contato": "contacted within the contact cap",
    "limite_diario": "the doctor's daily proactive limit is used up",
    "horario_comercial": "outside business hours",
}


def phone_hash(app: App, telefone: str) -> str:
    """The keyed hash kept of a forgotten doctor's phone (same as :data:`_HASH_SQL`)."""
    return erased.phone_hash(app, telefone)


_HASH_SQL = erased.hash_sql("s.telefone")

# ``src`` yields (k, medico_id, telefone, tipo, msg_id, ...); the result adds ``regras``,
# the hard rules that stop each row.
_RULES = f"""
SELECT s.*, array_remove(ARRAY[
    CASE WHEN 'optout' <> ALL(%(bypass)s) AND COALESCE(m.opted_out, false) THEN 'optout' END,
    CASE WHEN 'esquecido' <> ALL(%(bypass)s) AND EXISTS (SELECT 1 FROM medicos_esquecidos e
         WHERE e.telefone_hash = {_HASH_SQL}) THEN 'esquecido' END,
    CASE WHEN 'bloqueio_manual' <> ALL(%(bypass)s) AND EXISTS (SELECT 1 FROM guardrail_bloqueios b
         WHERE b.medico_id = m.id AND b.removido_em IS NULL) THEN 'bloqueio_manual' END,
    CASE WHEN 'controle_humano' <> ALL(%(bypass)s) AND s.tipo = ANY(%(julia_tipos)s)
         AND EXISTS (SELECT 1 FROM conversas c WHERE c.medico_id = m.id AND c.status = 'ativa'
                     AND c.controlled_by = 'humano') THEN 'controle_humano' END,
    CASE WHEN %(cap_on)s AND 'limite_contato' <> ALL(%(bypass)s) AND s.tipo = ANY(%(capped)s)
         AND (EXISTS (SELECT 1 FROM fila_mensagens x WHERE x.medico_id = m.id
                      AND x.enviada_em > %(cap_since)s AND x.id IS DISTINCT FROM s.msg_id)
              OR (m.id IS NULL AND EXISTS (SELECT 1 FROM fila_mensagens x
                      WHERE x.telefone = s.telefone AND x.enviada_em > %(cap_since)s
                      AND x.id IS DISTINCT FROM s.msg_id)))
         THEN 'limite_contato' END
], NULL) AS regras
FROM src s LEFT JOIN medicos m
  ON m.id = COALESCE(s.medico_id, (SELECT x.id FROM medicos x WHERE x.telefone = s.telefone))
"""


async def contact_cap_enabled(conn: AsyncConnection[Any]) -> bool:
    cur = await conn.execute("SELECT value FROM app_settings WHERE key = %s", (CONTACT_CAP_KEY,))
    row = await cur.fetchone()
    if row is None or not isinstance(row["value"], dict):
        return True
    return bool(row["value"].get("enabled", True))


async def _params(
    app: App, conn: AsyncConnection[Any], bypass: frozenset[str], now: datetime
) -> dict[str, Any]:
    unknown = set(bypass) - set(RULES)
    if unknown:
        raise InvalidInput(f"unknown guardrail {', '.join(sorted(unknown))} (one of {RULES})")
    return {
        "bypass": sorted(bypass),
        "pepper": erased.pepper(app),
        "julia_tipos": list(JULIA_TIPOS),
        "capped": list(CAPPED_TIPOS),
        "cap_on": await contact_cap_enabled(conn),
        "cap_since": now - timedelta(days=app.settings.guardrails_contact_cap_days),
    }


async def screen(
    app: App,
    conn: AsyncConnection[Any],
    medico_ids: Sequence[int],
    tipo: str,
    *,
    bypass: frozenset[str] = frozenset(),
) -> dict[int, list[str]]:
    """The hard rules that stop ``tipo`` to each of these doctors (empty list: none)."""
    rows = await screen_source(
        app, conn,
        "SELECT m.id AS k, m.id AS medico_id, m.telefone, %(tipo)s::text AS tipo,"
        " NULL::bigint AS msg_id FROM medicos m WHERE m.id = ANY(%(ids)s)",
        {"ids": list(medico_ids)}, tipo, bypass=bypass,
    )  # fmt: skip
    return {r["k"]: list(r["regras"]) for r in rows}


async def screen_source(
    app: App,
    conn: AsyncConnection[Any],
    source_sql: str,
    params: dict[str, Any],
    tipo: str,
    *,
    bypass: frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    """The rows of ``source_sql`` (``k, medico_id, telefone, tipo, msg_id`` and any other
    columns; ``%(tipo)s`` is bound) with ``regras`` added, in ``k`` order: one statement
    resolves and screens a whole segment."""
    p = await _params(app, conn, bypass, app.clock.now()) | params | {"tipo": tipo}
    cur = await conn.execute("WITH src AS (" + source_sql + ") " + _RULES + " ORDER BY s.k", p)
    return list(await cur.fetchall())  # dict rows already (the pool's row factory)


@dataclass(frozen=True)
class SendBlock:
    """Why a claimed message must not be sent: the first rule, as a queue outcome.

    ``status`` is where the message goes: ``bloqueada`` for a rule, ``cancelada`` when its
    campaign was cancelled, ``pendente`` with ``park`` when its campaign is paused (it
    waits, never due, until ``campanha retomar`` spreads it again)."""

    regra: str
    outcome: str
    motivo: str
    status: str = "bloqueada"
    park: bool = False


#: A campaign that stopped after its message was claimed (checked with the rules).
CAMPANHA_PAUSADA, CAMPANHA_CANCELADA = "campanha_pausada", "campanha_cancelada"


async def at_send(app: App, worker_id: str, ids: Sequence[int]) -> dict[int, SendBlock]:
    """Of these messages claimed by ``worker_id``, those that must not be sent now (the
    queue's send-time check, one statement): a cancelled campaign's end ``cancelada``;
    otherwise a hard rule stops it (opt-out and erasure give ``BLOCKED_OPTOUT``, the rest
    ``BLOCKED_GUARDRAIL``; ``motivo`` starts with the rule's name); otherwise a paused
    campaign's go back to waiting."""
    if not ids:
        return {}
    async with app.pool.connection() as conn:
        params = await _params(app, conn, frozenset(), app.clock.now())
        params |= {"ids": list(ids), "worker": worker_id}
        cur = await conn.execute(
            "WITH src AS (SELECT f.id AS k, f.medico_id, f.telefone, f.tipo, f.id AS msg_id,"
            " f.campanha_id, (SELECT ca.status FROM campanhas ca WHERE ca.id = f.campanha_id)"
            " AS campanha_status FROM fila_mensagens f WHERE f.id = ANY(%(ids)s)"
            " AND f.status = 'processando' AND f.lease_owner = %(worker)s) " + _RULES,
            params,
        )
        rows = await cur.fetchall()
    out = {}
    for r in rows:
        cid = r["campanha_id"]
        if r["campanha_status"] == "cancelada":
            out[r["k"]] = SendBlock(CAMPANHA_CANCELADA, "CANCELLED",
                                    f"campanha {cid} cancelada before it was sent",
                                    status="cancelada")  # fmt: skip
        elif r["regras"]:
            regra = r["regras"][0]
            outcome = "BLOCKED_OPTOUT" if regra in ("optout", "esquecido") else "BLOCKED_GUARDRAIL"
            out[r["k"]] = SendBlock(regra, outcome, f"{regra}: {EXPLAIN[regra]} before it was sent")
        elif r["campanha_status"] == "pausada":
            out[r["k"]] = SendBlock(CAMPANHA_PAUSADA, "RELEASED",
                                    f"campanha {cid} pausada before it was sent: waits for"
                                    " retomar", status="pendente", park=True)  # fmt: skip
    return out


@dataclass(frozen=True)
class RuleCheck:
    regra: str
    aplica: bool  # the rule concerns this message type
    bloqueia: bool  # it stops (hard) or delays (soft) the message now
    detalhe: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    telefone: str
    medico_id: int | None
    tipo: str
    allowed: bool  # no hard rule stops it
    now: bool  # and no soft rule delays it
    reasons: list[str]
    checks: list[RuleCheck] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["checks"] = [c.as_dict() for c in self.checks]
        return d


#: Postgres announces every opt-out here (migration 0014), matching what
#: :func:`opted_out_now` reads.
OPTOUT_CHANNEL = "julia_optout"


async def opted_out_now(
    app: App, medico_ids: Sequence[int], telefones: Sequence[str]
) -> tuple[set[int], set[str]]:
    """Of these doctors (by id or phone), those who opted out, read now: the last-moment
    consent check right before a gateway call (``julia.outbound.guards.may_still_send``),
    after :func:`at_send` screened the batch. Returns ``(ids, phones)``."""
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, telefone FROM medicos WHERE opted_out"
            " AND (id = ANY(%s) OR telefone = ANY(%s))",
            (list(medico_ids), list(telefones)),
        )
        rows = await cur.fetchall()
    return {r["id"] for r in rows}, {r["telefone"] for r in rows}


async def check(app: App, telefone: str, tipo: str = "campanha") -> Verdict:
    """Every rule for one doctor and message type right now, with why (``guardrails check``)."""
    from_tipos = ("resposta", "followup", "prospeccao", "campanha", "humano", "sistema")
    if tipo not in from_tipos:
        raise InvalidInput(f"tipo {tipo!r} is not one of {', '.join(from_tipos)}")
    phone = phones.normalize(telefone)
    now = app.clock.now()
    async with app.pool.connection() as conn:
        params = await _params(app, conn, frozenset(), now)
        params |= {"tel": phone, "tipo": tipo}
        cur = await conn.execute(
            "WITH src AS (SELECT 0 AS k, (SELECT id FROM medicos WHERE telefone = %(tel)s)"
            " AS medico_id, %(tel)s::text AS telefone, %(tipo)s::text AS tipo,"
            " NULL::bigint AS msg_id) " + _RULES,
            params,
        )
        row = await cur.fetchone()
        cur = await conn.execute(
            "SELECT m.id, (SELECT max(enviada_em) FROM fila_mensagens f WHERE f.medico_id = m.id)"
            " AS ultimo FROM medicos m WHERE m.telefone = %s",
            (phone,),
        )
        med = await cur.fetchone()
    hard = list(row["regras"]) if row else []
    applies = {
        "optout": True, "esquecido": True, "bloqueio_manual": True,
        "controle_humano": tipo in JULIA_TIPOS,
        "limite_contato": tipo in CAPPED_TIPOS and params["cap_on"],
        "limite_diario": tipo in PROACTIVE_TIPOS, "horario_comercial": tipo in PROACTIVE_TIPOS,
    }  # fmt: skip
    checks = []
    for regra in HARD:
        detalhe = EXPLAIN[regra] if regra in hard else "clear"
        if regra == "limite_contato":
            if not params["cap_on"]:
                detalhe = "the contact cap is turned off (app_settings)"
            elif med and med["ultimo"]:
                detalhe = f"last sent {med['ultimo']:%Y-%m-%d %H:%M} UTC" + (
                    f" (within {app.settings.guardrails_contact_cap_days:g} days)"
                    if regra in hard else ""
                )  # fmt: skip
        checks.append(RuleCheck(regra, applies[regra], regra in hard, detalhe))
    rs = await ratelimit.status(app, telefone=phone)
    used = next((u for u in rs.usage if u.limit in ("medico", "medico_daily")), None)
    daily_full = used is not None and used.left <= 0 and rs.override is None
    checks.append(RuleCheck(
        "limite_diario", applies["limite_diario"], applies["limite_diario"] and daily_full,
        f"{used.used}/{used.max} proactive in 24 h" if used else "unknown",
    ))  # fmt: skip
    open_now = BusinessHours.from_settings(app.settings).is_open(now)
    checks.append(RuleCheck(
        "horario_comercial", applies["horario_comercial"],
        applies["horario_comercial"] and not open_now,
        "open" if open_now else "closed now",
    ))  # fmt: skip
    waiting = [c.regra for c in checks if c.regra in SOFT and c.bloqueia]
    return Verdict(
        telefone=phone, medico_id=med["id"] if med else None, tipo=tipo,
        allowed=not hard, now=not hard and not waiting, reasons=hard + waiting, checks=checks,
    )  # fmt: skip


async def record_bypass(
    conn: AsyncConnection[Any],
    now: datetime,
    actor: audit.Actor,
    regra: str,
    motivo: str,
    *,
    medico_id: int | None = None,
    campanha_id: int | None = None,
    detalhes: dict[str, Any] | None = None,
) -> None:
    """One ``guardrail_bypasses`` row (and its audit row), in the caller's transaction."""
    if regra not in RULES:
        raise InvalidInput(f"unknown guardrail {regra!r} (one of {', '.join(RULES)})")
    if not motivo.strip():
        raise InvalidInput("a bypass needs a reason (--motivo)")
    await conn.execute(
        "INSERT INTO guardrail_bypasses (regra, medico_id, campanha_id, operador, motivo,"
        " detalhes, at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (regra, medico_id, campanha_id, actor.name, motivo, Jsonb(detalhes or {}), now),
    )
    await audit.record(
        conn, now, actor, "guardrails.bypass", alvo=regra, motivo=motivo,
        detalhes={"medico_id": medico_id, "campanha_id": campanha_id},
    )  # fmt: skip


async def set_contact_cap(app: App, enabled: bool, *, motivo: str, actor: audit.Actor) -> None:
    """Turn the contact cap on or off (``app_settings``); turning it off is a bypass row."""
    if not motivo.strip():
        raise InvalidInput("say why (--motivo)")
    now = app.clock.now()
    async with app.pool.connection() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO app_settings (key, value, updated_at, updated_by) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value,"
            " updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by",
            (CONTACT_CAP_KEY, Jsonb({"enabled": enabled}), now, actor.name),
        )
        if enabled:
            await audit.record(conn, now, actor, "guardrails.contact_cap_on", motivo=motivo)
        else:
            await record_bypass(conn, now, actor, "limite_contato", motivo,
                                detalhes={"scope": "global", "enabled": False})  # fmt: skip


async def bypasses(app: App, limit: int = 50) -> list[dict[str, Any]]:
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, regra, medico_id, campanha_id, operador, motivo, detalhes, at"
            " FROM guardrail_bypasses ORDER BY id DESC LIMIT %s",
            (limit,),
        )
        return list(await cur.fetchall())
