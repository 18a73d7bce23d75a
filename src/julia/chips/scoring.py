"""Feeding the trust score from what really happened, and recomputing it.

Inputs come from Postgres only:

- ``chip_eventos``: every send outcome on the chip (``sent`` with its provider
  message id and media type, ``send_error`` with its code, ``block`` on a 403),
  written by :mod:`julia.chips.sending`;
- ``mensagens_recebidas`` (the inbox): every inbound message on the chip's
  instance — replies, bidirectional conversations (a number counted once),
  message types;
- ``mensagens_acks`` (the inbox's stored ``messages.update``): delivery and read
  acks of the chip's sends, and ``ERROR`` acks (counted as blocks).

:func:`recalculate_all` is the 15-minute job; :func:`recalculate` also runs at
once after a 400/403, a ban, or a block rate over 2 %, and raises an alert when
a chip falls to vermelho or crítico.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from julia.chips import alerts, pool, trust
from julia.core import audit
from julia.core.app import App
from julia.core.errors import ChipNotFound
from julia.core.logs import get_logger

log = get_logger(__name__)

#: Ack statuses meaning the message reached the doctor's phone (Evolution and Z-API).
DELIVERED = ["DELIVERY_ACK", "DELIVERED", "RECEIVED", "READ", "PLAYED", "READ_BY_ME"]
#: Ack statuses meaning the message was refused (counted as blocks).
REFUSED = ["ERROR", "FAILED"]

_INPUTS = """
WITH sends AS (
    SELECT telefone, provider_message_id, midia FROM chip_eventos
    WHERE chip_id = %(id)s AND kind = 'sent' AND at > %(since)s
), inbound AS (
    SELECT telefone, tipo FROM mensagens_recebidas
    WHERE instance = %(instance)s AND kind = 'mensagem' AND NOT from_me AND NOT is_group
      AND received_at > %(since)s AND telefone IS NOT NULL
), acks AS (
    SELECT a.provider_message_id, a.status FROM mensagens_acks a
    WHERE a.provider_message_id IN (SELECT provider_message_id FROM sends
                                    WHERE provider_message_id IS NOT NULL)
)
SELECT
    (SELECT count(*) FROM sends) AS sent,
    (SELECT count(DISTINCT provider_message_id) FROM acks
      WHERE status = ANY(%(delivered)s)) AS delivered,
    (SELECT count(DISTINCT telefone) FROM sends) AS contacted,
    (SELECT count(DISTINCT s.telefone) FROM sends s
      WHERE s.telefone IN (SELECT telefone FROM inbound)) AS replied,
    (SELECT count(*) FROM (SELECT telefone FROM inbound INTERSECT
                            SELECT telefone FROM sends) b) AS bidirectional,
    (SELECT count(*) FROM (SELECT tipo FROM inbound UNION
                            SELECT coalesce(midia, 'texto') FROM sends) m) AS media_types,
    (SELECT count(*) FROM chip_eventos WHERE chip_id = %(id)s AND kind = 'send_error'
      AND at > %(day)s) AS errors_24h,
    (SELECT count(*) FROM chip_eventos WHERE chip_id = %(id)s AND kind = 'block'
      AND at > %(since)s)
    + (SELECT count(DISTINCT provider_message_id) FROM acks
        WHERE status = ANY(%(refused)s)) AS blocks
"""


async def gather_inputs(app: App, chip: pool.Chip, conn: AsyncConnection[Any]) -> trust.TrustInputs:
    """The measured inputs of one chip's score, now."""
    now = app.clock.now()
    cur = await conn.execute(
        _INPUTS,
        {
            "id": chip.id,
            "instance": chip.instance,
            "since": now - timedelta(days=app.settings.chip_trust_window_days),
            "day": now - timedelta(hours=24),
            "delivered": DELIVERED,
            "refused": REFUSED,
        },
    )
    row = await cur.fetchone()
    assert row is not None
    return trust.TrustInputs(
        status=chip.status,
        age_days=max(0.0, (now - chip.created_at).total_seconds() / 86400),
        warming_days=chip.warming_days(now),
        **{k: int(v) for k, v in row.items()},
    )


@dataclass(frozen=True)
class Recalculated:
    chip_id: int
    instance: str
    before: int
    after: int
    level_before: str
    level: str
    score: trust.TrustScore
    inputs: trust.TrustInputs
    alerted: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "chip_id": self.chip_id,
            "instance": self.instance,
            "before": self.before,
            "trust_score": self.after,
            "level_before": self.level_before,
            "trust_level": self.level,
            "block_rate": round(self.inputs.block_rate, 4),
            "inputs": self.inputs.as_dict(),
            **self.score.as_dict(),
            "alerted": self.alerted,
        }


async def explain(app: App, chip_id: int) -> Recalculated:
    """What the score of a chip would be now, factor by factor, without storing it."""
    async with app.pool.connection() as conn:
        chip = await pool.get(app, chip_id, conn)
        inputs = await gather_inputs(app, chip, conn)
    score = trust.compute(inputs, app.settings)
    return Recalculated(
        chip.id, chip.instance, chip.trust_score, score.score, chip.trust_level, score.level,
        score, inputs,
    )  # fmt: skip


async def recalculate(app: App, chip_id: int, *, motivo: str = "scheduled") -> Recalculated:
    """Recompute and store one chip's score (one history row); alert on a fall to
    vermelho/crítico."""
    now = app.clock.now()
    async with app.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(pool.SELECT + " WHERE id = %s FOR UPDATE", (chip_id,))
        row = await cur.fetchone()
        if row is None:
            raise ChipNotFound(f"no chip with id {chip_id}")
        chip = pool.Chip(**row)
        inputs = await gather_inputs(app, chip, conn)
        score = trust.compute(inputs, app.settings)
        factors = score.as_dict()["factors"]
        await conn.execute(
            "UPDATE chips SET trust_score = %s, trust_level = %s, trust_source = 'computed',"
            " trust_factors = %s, trust_updated_at = %s, updated_at = %s WHERE id = %s",
            (score.score, score.level, Jsonb(factors), now, now, chip.id),
        )
        await conn.execute(
            "INSERT INTO chip_trust_historico (chip_id, score, level, factors, inputs, motivo, at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (chip.id, score.score, score.level, Jsonb(factors), Jsonb(inputs.as_dict()), motivo,
             now),
        )  # fmt: skip
    result = Recalculated(
        chip.id, chip.instance, chip.trust_score, score.score, chip.trust_level, score.level,
        score, inputs,
    )  # fmt: skip
    log.info(
        "chip.trust_recalculated", chip_id=chip.id, before=chip.trust_score, after=score.score,
        level=score.level, motivo=motivo,
    )  # fmt: skip
    alert_levels = set(app.settings.chip_trust_alert_levels)
    if score.level in alert_levels and chip.trust_level not in alert_levels:
        alerted = await alerts.raise_alert(
            app, "chip.trust_low", "critical" if score.level == "critico" else "warning",
            f"chip {chip.instance} (id {chip.id}) fell to trust {score.score} ({score.level})",
            key=f"chip.trust_low:{chip.id}:{score.level}",
            details={"chip_id": chip.id, "score": score.score, "level": score.level,
                     "before": chip.trust_score, "motivo": motivo},
        )  # fmt: skip
        result = Recalculated(**{**result.__dict__, "alerted": alerted})
    return result


async def recalculate_all(app: App, *, motivo: str = "scheduled") -> list[Recalculated]:
    """Recompute every chip that is not banned or retired (the 15-minute job)."""
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id FROM chips WHERE status NOT IN ('banned', 'retired') ORDER BY id"
        )
        ids = [r["id"] for r in await cur.fetchall()]
    return [await recalculate(app, i, motivo=motivo) for i in ids]


async def block_rate(app: App, chip_id: int) -> float:
    """The chip's block rate in the trust window (for the urgent-recompute rule)."""
    async with app.pool.connection() as conn:
        chip = await pool.get(app, chip_id, conn)
        inputs = await gather_inputs(app, chip, conn)
    return inputs.block_rate


async def trust_report(
    app: App, chip_id: int | None = None, *, recalc: bool = False, actor: Any = None
) -> list[Recalculated]:
    """``julia chips trust``: one chip or all, explained; with ``recalc`` recomputed,
    stored and audited (``actor``: an :class:`julia.core.audit.Actor`)."""
    if not recalc:
        if chip_id is not None:
            return [await explain(app, chip_id)]
        chips = await pool.list_chips(app, with_circuit=False)
        return [await explain(app, c.id) for c in chips]
    if chip_id is None:
        done = await recalculate_all(app, motivo="operator")
    else:
        done = [await recalculate(app, chip_id, motivo="operator")]
    async with app.pool.connection() as conn:
        await audit.record(
            conn, app.clock.now(), actor or audit.Actor.of(app), "chips.trust_recalc",
            alvo=f"chip:{chip_id}" if chip_id is not None else "chips",
            detalhes={"scores": {str(r.chip_id): [r.before, r.after] for r in done}},
        )  # fmt: skip
    return done
