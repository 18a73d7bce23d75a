"""A campaign's numbers: queued, sent, delivered, read, replied, opted out, blocked by
reason, failed, cancelled; and its sends per hour."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from julia.campanhas import store
from julia.chips.scoring import DELIVERED
from julia.core.app import App

READ = ["READ", "PLAYED"]

_COUNTS = """
SELECT
  count(*) FILTER (WHERE f.status IN ('pendente', 'processando', 'incerta')) AS queued,
  count(*) FILTER (WHERE f.status = 'pendente' AND f.proxima_tentativa_em = 'infinity') AS held,
  count(*) FILTER (WHERE f.status = 'enviada') AS sent,
  count(*) FILTER (WHERE f.status IN ('dlq', 'expirada')) AS failed,
  count(*) FILTER (WHERE f.status = 'cancelada') AS cancelled,
  count(*) FILTER (WHERE f.status = 'enviada' AND EXISTS (SELECT 1 FROM mensagens_acks a
      WHERE a.provider_message_id = f.provider_message_id AND a.status = ANY(%(delivered)s)))
      AS delivered,
  count(*) FILTER (WHERE f.status = 'enviada' AND EXISTS (SELECT 1 FROM mensagens_acks a
      WHERE a.provider_message_id = f.provider_message_id AND a.status = ANY(%(read)s))) AS read,
  count(*) FILTER (WHERE f.status = 'enviada' AND EXISTS (SELECT 1 FROM mensagens_recebidas r
      WHERE r.telefone = f.telefone AND r.kind = 'mensagem' AND NOT r.from_me
      AND r.received_at > f.enviada_em AND r.received_at <= f.enviada_em + %(reply)s))
      AS replied,
  count(*) FILTER (WHERE f.outcome = 'BLOCKED_OPTOUT' OR (f.status = 'enviada' AND EXISTS (
      SELECT 1 FROM medicos m WHERE m.id = f.medico_id AND m.opted_out
      AND m.opted_out_em >= f.enviada_em))) AS opted_out,
  count(*) AS total
FROM fila_mensagens f WHERE f.campanha_id = %(id)s
"""


async def status(app: App, cid: int, *, hours: int = 24) -> dict[str, Any]:
    c = await store.get(app, cid)
    now = app.clock.now()
    async with app.pool.connection() as conn:
        cur = await conn.execute(_COUNTS, {
            "id": cid, "delivered": DELIVERED, "read": READ,
            "reply": timedelta(days=app.settings.campanha_reply_days),
        })  # fmt: skip
        counts = dict(await cur.fetchone() or {})
        cur = await conn.execute(
            "SELECT split_part(COALESCE(motivo, outcome), ':', 1) AS regra, count(*) AS n"
            " FROM fila_mensagens WHERE campanha_id = %s AND status = 'bloqueada' GROUP BY 1",
            (cid,),
        )
        by_reason = {r["regra"]: r["n"] for r in await cur.fetchall()}
        cur = await conn.execute(
            "SELECT date_trunc('hour', enviada_em) AS h, count(*) AS n FROM fila_mensagens"
            " WHERE campanha_id = %s AND enviada_em > %s GROUP BY 1 ORDER BY 1",
            (cid, now - timedelta(hours=hours)),
        )
        per_hour = [{"hour": r["h"], "sent": r["n"]} for r in await cur.fetchall()]
        cur = await conn.execute(
            "SELECT min(agendar_para) FILTER (WHERE status = 'pendente') AS next_due,"
            " max(agendar_para) FILTER (WHERE status = 'pendente'"
            " AND agendar_para < 'infinity') AS last_due"
            " FROM fila_mensagens WHERE campanha_id = %s",
            (cid,),
        )
        due = dict(await cur.fetchone() or {})
    return {
        "id": c.id, "nome": c.nome, "status": c.status, "status_motivo": c.status_motivo,
        "ritmo": c.ritmo, **counts, "blocked": sum(by_reason.values()),
        "blocked_by_reason": by_reason, "sends_per_hour": per_hour, **due,
    }  # fmt: skip


def chart(per_hour: list[dict[str, Any]], width: int = 40) -> list[str]:
    """Sends per hour as terminal bars (one line an hour)."""
    top = max((p["sent"] for p in per_hour), default=0)
    return [
        f"{p['hour']:%d/%m %H:00} {'█' * max(1, round(width * p['sent'] / top))} {p['sent']}"
        for p in per_hour
    ] if top else []  # fmt: skip
