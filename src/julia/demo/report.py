"""The demo's report: what happened, from Postgres and from the sandbox's own record of
what it received, and whether the invariants hold.

Two independent witnesses: the queue says what Júlia believes she sent; the sandbox
gateway says what WhatsApp got. A message in one and not the other is lost; a doctor
who got the same text twice, or a fila message that reached WhatsApp twice, is a
duplicate.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from julia.core.app import App
from julia.inbox.processors import texts

TERMINAL = ("enviada", "cancelada", "expirada", "dlq", "bloqueada")
#: Texts Júlia sends straight through the chip, bypassing the queue (by design).
DIRECT_TEXTS = frozenset({texts.OPTOUT_CONFIRMATION})


@dataclass
class Report:
    sent: int = 0
    delivered: int = 0
    replied: int = 0
    reserved: int = 0
    handoffs: int = 0
    handoffs_ended: dict[str, int] = field(default_factory=dict)
    opt_outs: int = 0
    opt_out_violations: int = 0
    alerts: int = 0
    alerts_by_kind: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    lost: int = 0
    not_terminal: int = 0
    fila: dict[str, int] = field(default_factory=dict)
    inbox: dict[str, int] = field(default_factory=dict)
    by_chip: dict[str, int] = field(default_factory=dict)
    incident: dict[str, Any] = field(default_factory=dict)
    behaviours: dict[str, int] = field(default_factory=dict)
    checks: dict[str, str] = field(default_factory=dict)
    ok: bool = False
    look_next: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def _rows(app: App, sql: str, *args: Any) -> list[dict[str, Any]]:
    async with app.pool.connection() as conn:
        cur = await conn.execute(sql, args)
        return list(await cur.fetchall())


async def _has_table(app: App, name: str) -> bool:
    rows = await _rows(app, "SELECT to_regclass(%s) IS NOT NULL AS present", name)
    return bool(rows[0]["present"])


async def build(
    app: App,
    sandbox_messages: list[dict[str, Any]],
    posted: list[dict[str, Any]],
    *,
    incident_instance: str,
    incident_at: datetime | None,
    require: dict[str, bool],
    look_next: list[str],
) -> Report:
    """Compute the report. ``posted`` are the doctors' webhooks the simulator caused;
    ``require`` says which story invariants this build can be held to (a reservation
    needs the agent)."""
    r = Report(look_next=look_next)
    fila = await _rows(
        app,
        "SELECT id, telefone, status, tipo, texto, provider_message_id,"
        " instancia, campanha_id, medico_id FROM fila_mensagens",
    )
    r.fila = dict(Counter(m["status"] for m in fila))
    r.sent = r.fila.get("enviada", 0)
    r.not_terminal = sum(1 for m in fila if m["status"] not in TERMINAL)

    by_id = {m["id"]: m for m in sandbox_messages}
    direct = sum(1 for m in sandbox_messages if m["text"] in DIRECT_TEXTS)
    r.sent += direct  # the opt-out confirmations go straight through the chip
    r.delivered = sum(1 for m in sandbox_messages if m.get("status") in ("DELIVERY_ACK", "READ"))
    r.by_chip = dict(Counter(m["instance"] for m in sandbox_messages))

    # lost: queue says sent, WhatsApp never got it; or WhatsApp got one nobody recorded
    sent_ids = [m["provider_message_id"] for m in fila if m["status"] == "enviada"]
    missing = [i for i in sent_ids if i not in by_id]
    recorded = set(sent_ids)
    unrecorded = [
        m for m in sandbox_messages if m["id"] not in recorded and m["text"] not in DIRECT_TEXTS
    ]
    # inbound: every webhook a doctor caused is stored and became (part of) a turn
    inbox = await _rows(
        app, "SELECT provider_message_id, status FROM mensagens_recebidas WHERE kind = 'mensagem'"
    )
    r.inbox = dict(Counter(m["status"] for m in inbox))
    stored = {m["provider_message_id"]: m["status"] for m in inbox}
    inbound_missing = [p["id"] for p in posted if p["id"] not in stored]
    inbound_stuck = [i for i, st in stored.items() if st in ("pendente", "erro")]
    r.not_terminal += len(inbound_stuck)
    r.lost = len(missing) + len(unrecorded) + len(inbound_missing)

    # duplicates: one fila message sent twice, or one doctor given the same text twice
    texts_per_doctor = Counter((m["number"], m["text"]) for m in sandbox_messages)
    same_text = sum(n - 1 for n in texts_per_doctor.values() if n > 1)
    twice = sum(n - 1 for n in Counter(sent_ids).values() if n > 1)
    campaign = Counter(
        m["telefone"] for m in fila if m["tipo"] == "campanha" and m["status"] == "enviada"
    )
    campaign_twice = sum(n - 1 for n in campaign.values() if n > 1)
    r.duplicates = max(same_text, twice + campaign_twice)

    r.replied = len({p["number"] for p in posted})
    vagas = await _rows(
        app, "SELECT count(*) AS n FROM vagas WHERE status IN ('reservada', 'confirmada')"
    )
    r.reserved = int(vagas[0]["n"])

    if await _has_table(app, "handoffs"):
        ended = {"pendente": "waiting for a person", "em_atendimento": "with a person",
                 "resolvido": "given back to Júlia"}  # fmt: skip
        rows = await _rows(app, "SELECT status FROM handoffs")
        r.handoffs = len(rows)
        r.handoffs_ended = dict(Counter(ended.get(h["status"], h["status"]) for h in rows))
    else:  # before the handoff capability: the inbox's handoff events
        rows = await _rows(
            app,
            """
            SELECT coalesce(c.controlled_by, 'julia') AS now_with
            FROM (SELECT DISTINCT medico_id FROM business_events WHERE tipo = 'handoff') e
            LEFT JOIN conversas c ON c.medico_id = e.medico_id AND c.status = 'ativa'""",
        )
        r.handoffs = len(rows)
        r.handoffs_ended = dict(Counter(
            "with a person" if h["now_with"] == "humano" else "given back to Júlia" for h in rows
        ))  # fmt: skip

    out = await _rows(app, "SELECT telefone, opted_out_em FROM medicos WHERE opted_out")
    r.opt_outs = len(out)
    since = {o["telefone"].lstrip("+"): o["opted_out_em"] for o in out}
    r.opt_out_violations = sum(
        1
        for m in sandbox_messages
        if m["number"] in since
        and m["text"] not in DIRECT_TEXTS
        and datetime.fromisoformat(m["time"]) > since[m["number"]]
    )

    alerts = await _rows(app, "SELECT kind FROM alerts")
    r.alerts_by_kind = dict(Counter(a["kind"] for a in alerts))
    r.alerts = len(alerts)

    chips = await _rows(app, "SELECT id, instance, cooldown_until FROM chips")
    first = next((c for c in chips if c["instance"] == incident_instance), None)
    emergency = await _rows(app, "SELECT count(*) AS n FROM chip_selection_log WHERE emergency")
    moves = await _rows(app, "SELECT name, to_state FROM circuit_transitions")
    r.incident = {
        "chip": incident_instance,
        "fault_at": incident_at.isoformat() if incident_at else None,
        "cooldown_until": (
            first["cooldown_until"].isoformat() if first and first["cooldown_until"] else None
        ),
        "breaker_opened": first is not None
        and any(m["name"] == f"chip:{first['id']}" and m["to_state"] == "open" for m in moves),
        "emergency_selections": int(emergency[0]["n"]),
        "sent_by_others_after": (
            sum(
                1
                for m in sandbox_messages
                if m["instance"] != incident_instance
                and incident_at is not None
                and datetime.fromisoformat(m["time"]) > incident_at
            )
        ),
    }
    r.details = {
        "missing_at_gateway": missing[:10],
        "unrecorded_at_gateway": [m["id"] for m in unrecorded[:10]],
        "inbound_missing": inbound_missing[:10],
        "inbound_stuck": inbound_stuck[:10],
    }

    checks = {
        "no duplicate": r.duplicates == 0,
        "nothing lost": r.lost == 0,
        "every message terminal": r.not_terminal == 0,
        "every opt-out respected": r.opt_out_violations == 0,
        "at least one reservation": r.reserved >= 1,
        "at least one handoff": r.handoffs >= 1,
        "the incident was handled": bool(r.incident["cooldown_until"])
        and r.incident["sent_by_others_after"] > 0,
    }
    for name, held in checks.items():
        required = require.get(name, True)
        r.checks[name] = "ok" if held else ("FAILED" if required else "not held (not required)")
    r.ok = all(v != "FAILED" for v in r.checks.values())
    return r
