"""The campaign job: start scheduled campaigns in their window, pause a campaign whose
opt-outs or failures cross a threshold or whose chip was restricted, close finished ones,
and alert on one that should be sending but is not. Never a campaign that silently
sends nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from julia.campanhas import envio, store
from julia.campanhas.states import Status
from julia.core import audit
from julia.core.app import App
from julia.core.errors import JuliaError
from julia.core.logs import get_logger
from julia.notify import alerts

log = get_logger(__name__)


@dataclass
class TickReport:
    started: list[int] = field(default_factory=list)
    paused: list[int] = field(default_factory=list)
    completed: list[int] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)


async def _ids(app: App, status: Status) -> list[int]:
    async with app.pool.connection() as conn:
        cur = await conn.execute("SELECT id FROM campanhas WHERE status = %s ORDER BY id",
                                 (status.value,))  # fmt: skip
        return [r["id"] for r in await cur.fetchall()]


async def health(app: App, cid: int) -> dict[str, Any]:
    """The numbers the thresholds judge, and the restricted chips that sent for it."""
    c = await store.get(app, cid)
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            """
            SELECT count(*) FILTER (WHERE f.status = 'enviada') AS sent,
                   count(*) FILTER (WHERE f.status = 'dlq') AS failed,
                   count(*) FILTER (WHERE f.outcome = 'BLOCKED_OPTOUT' OR (f.status = 'enviada'
                       AND EXISTS (SELECT 1 FROM medicos m WHERE m.id = f.medico_id
                       AND m.opted_out AND m.opted_out_em >= f.enviada_em))) AS opted_out,
                   count(*) FILTER (WHERE f.status = 'pendente'
                       AND f.proxima_tentativa_em <= %(stall)s) AS overdue,
                   max(f.enviada_em) AS last_sent
            FROM fila_mensagens f WHERE f.campanha_id = %(id)s
            """,
            {"id": cid, "stall": app.clock.now()
             - timedelta(minutes=app.settings.campanha_stall_minutes)},
        )  # fmt: skip
        row = dict(await cur.fetchone() or {})
        cur = await conn.execute(
            "SELECT DISTINCT c.id, c.instance, c.status FROM chips c WHERE c.id IN"
            " (SELECT chip_id FROM fila_mensagens WHERE campanha_id = %s AND chip_id IS NOT NULL)"
            " AND (c.restricao_em >= %s OR c.banned_at >= %s"
            "      OR c.status IN ('banned', 'degraded'))",
            (cid, c.iniciada_em or c.created_at, c.iniciada_em or c.created_at),
        )
        row["restricted_chips"] = [dict(r) for r in await cur.fetchall()]
    return row


async def judge(app: App, cid: int) -> str | None:
    """Why the campaign must pause now, or None."""
    s = app.settings
    h = await health(app, cid)
    if h["restricted_chips"]:
        chip = h["restricted_chips"][0]
        return f"chip {chip['id']} ({chip['instance']}) was restricted mid-campaign"
    sent = h["sent"] or 0
    if sent >= s.campanha_min_sample and h["opted_out"] / sent > s.campanha_max_optout_rate:
        return (f"opt-outs {h['opted_out']}/{sent} above"
                f" {s.campanha_max_optout_rate:.0%}")  # fmt: skip
    tried = sent + (h["failed"] or 0)
    if tried >= s.campanha_min_sample and h["failed"] / tried > s.campanha_max_failure_rate:
        return f"failures {h['failed']}/{tried} above {s.campanha_max_failure_rate:.0%}"
    return None


async def _alert(app: App, kind: str, cid: int, message: str, **details: Any) -> None:
    await alerts.raise_alert(app, kind, message, severity="critical", key=str(cid),
                             details={"campanha_id": cid, **details})  # fmt: skip


async def tick(app: App) -> TickReport:
    report = TickReport()
    actor = audit.AUTOMATION
    now = app.clock.now()
    for cid in await _ids(app, Status.AGENDADA):
        c = await store.get(app, cid)
        if not c.janela(app.settings.timezone).is_open(now):
            continue
        try:
            await envio.enviar(app, cid, actor=actor)
            report.started.append(cid)
        except JuliaError as exc:
            await _alert(app, "campanha.start_failed", cid,
                         f"campaign {cid} should have started and did not: {exc}")  # fmt: skip
            report.alerts.append(f"start_failed:{cid}")
    for cid in await _ids(app, Status.ENVIANDO):
        why = await judge(app, cid)
        if why is not None:
            await envio.pausar(app, cid, actor=actor, motivo=f"auto-paused: {why}")
            await _alert(app, "campanha.auto_paused", cid, f"campaign {cid} paused: {why}")
            report.paused.append(cid)
            report.alerts.append(f"auto_paused:{cid}")
            continue
        st = await health(app, cid)
        async with app.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) AS n FROM fila_mensagens WHERE campanha_id = %s"
                " AND status IN ('pendente', 'processando', 'incerta')",
                (cid,),
            )
            left = (await cur.fetchone() or {"n": 0})["n"]
        if left == 0:
            async with app.pool.connection() as conn, conn.transaction():
                c = await store.get(app, cid, conn)
                await store.transition(app, conn, c, Status.CONCLUIDA, actor, "nothing left")
            report.completed.append(cid)
            continue
        stall = timedelta(minutes=app.settings.campanha_stall_minutes)
        if st["overdue"] and (st["last_sent"] is None or st["last_sent"] < now - stall):
            await _alert(
                app, "campanha.stalled", cid,
                f"campaign {cid} should be sending and is not: {st['overdue']} message(s)"
                f" overdue, nothing sent in {app.settings.campanha_stall_minutes:g} min",
                overdue=st["overdue"],
            )  # fmt: skip
            report.alerts.append(f"stalled:{cid}")
    if report.started or report.paused or report.alerts:
        log.info("campanha.tick", **vars(report))
    return report
