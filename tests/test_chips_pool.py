"""The chip registry and lifecycle: CLI contract, transitions, audit, cooldown, ban, migration."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from julia.chips import lifecycle, migration, pool, scoring
from julia.core import audit
from julia.core.app import App
from julia.core.clock import FrozenClock
from julia.core.errors import ChipTransitionRefused, InvalidInput


async def _rows(app: App, sql: str, *args: Any) -> list[dict[str, Any]]:
    async with app.pool.connection() as conn:
        cur = await conn.execute(sql, args)
        return list(await cur.fetchall())


def test_cli_add_and_list_json_contract(cli: Any) -> None:
    r = cli("chips", "add", "--instance", "chip-a", "--telefone", "(11) 99999-0001",
            "--provider", "evolution", "--trust", "85", "--status", "active", "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    added = json.loads(r.stdout)
    # a chip's number is masked in --json too: only a doctor's own record shows it whole
    assert added["telefone"] == "5511...0001" and added["trust_source"] == "manual"
    r = cli("chips", "add", "--instance", "chip-b", "--telefone", "11999990002")
    assert r.exit_code == 0, r.output
    r = cli("chips", "list", "--json")
    assert r.exit_code == 0, r.output
    chips = json.loads(r.stdout)
    assert [c["instance"] for c in chips] == ["chip-a", "chip-b"]
    assert "999990001" not in r.stdout and chips[1]["telefone"] == "5511...0002"
    for key in ("id", "instance", "status", "trust_score", "trust_level", "circuit",
                "cooldown_until"):  # fmt: skip
        assert key in chips[0]
    a, b = chips
    assert (a["status"], a["trust_score"], a["trust_level"], a["circuit"]) == (
        "active", 85, "verde", "closed",
    )  # fmt: skip
    # no data → a low computed score, never a high one
    assert b["status"] == "provisioned" and b["trust_score"] < 60
    r = cli("chips", "list")
    assert r.exit_code == 0 and "2 chips" in r.stdout and "999990001" not in r.stdout


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["--instance", "x", "--telefone", "123"], 2, "invalid phone"),
        (["--instance", "x", "--telefone", "11999990009", "--provider", "twilio"], 2, "provider"),
        (["--instance", "x", "--telefone", "11999990009", "--status", "live"], 2, "status"),
        (["--instance", "x", "--telefone", "11999990009", "--trust", "101"], 2, "trust"),
        (["--instance", "chip-a", "--telefone", "11999990009"], 5, "already exists"),
    ],
)
def test_cli_bad_input_is_one_line_and_changes_nothing(
    cli: Any, args: list[str], code: int, text: str
) -> None:
    assert cli("chips", "add", "--instance", "chip-a", "--telefone", "11999990001").exit_code == 0
    r = cli("chips", "add", *args)
    assert r.exit_code == code, r.output
    assert text in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert len(json.loads(cli("chips", "list", "--json").stdout)) == 1


def test_cli_unknown_chip_is_not_found(cli: Any) -> None:
    for args in (
        ["show", "99"], ["promote", "99"], ["demote", "99", "--motivo", "x"], ["trust", "99"],
        ["cooldown", "99", "--minutos", "5", "--motivo", "x"],
    ):  # fmt: skip
        r = cli("chips", *args)
        assert r.exit_code == 4, (args, r.output)
        assert "no chip with id 99" in r.stderr


async def test_promote_walks_the_lifecycle_with_transitions_and_audit(app: App) -> None:
    chip = await pool.add(app, instance="c1", telefone="11999990001", actor=audit.Actor("ana"))
    seen = []
    for _ in range(4):
        done = await lifecycle.promote(app, chip.id, actor=audit.Actor("ana"))
        seen.append(done.chip.status)
    assert seen == ["pending", "warming", "ready", "active"]
    with pytest.raises(ChipTransitionRefused):
        await lifecycle.promote(app, chip.id)
    rows = await _rows(app, "SELECT de, para, ator FROM chip_transitions WHERE chip_id = %s"
                            " ORDER BY id", chip.id)  # fmt: skip
    assert [(r["de"], r["para"]) for r in rows] == [
        (None, "provisioned"), ("provisioned", "pending"), ("pending", "warming"),
        ("warming", "ready"), ("ready", "active"),
    ]  # fmt: skip
    assert {r["ator"] for r in rows} == {"ana"}
    acts = [r["acao"] for r in await audit.recent(app, acao=None)]
    assert acts.count("chips.add") == 1 and "chips.active" in acts
    got = await pool.get(app, chip.id)
    assert got.warming_started_at is not None and got.activated_at is not None


async def test_demote_needs_a_reason_and_banned_is_final(app: App) -> None:
    chip = await pool.add(app, instance="c1", telefone="11999990001", status="active")
    with pytest.raises(InvalidInput):
        await lifecycle.demote(app, chip.id, motivo=" ")
    assert (await pool.get(app, chip.id)).status == "active"
    await lifecycle.demote(app, chip.id, motivo="errors")
    await lifecycle.promote(app, chip.id, motivo="back")
    await lifecycle.ban(app, chip.id, motivo="banned by WhatsApp")
    for action in (lifecycle.promote(app, chip.id), lifecycle.demote(app, chip.id, motivo="x")):
        with pytest.raises(ChipTransitionRefused):
            await action


async def test_cooldown_window_keeps_the_longer_one_and_zero_ends_it(
    app: App, clock: FrozenClock
) -> None:
    chip = await pool.add(app, instance="c1", telefone="11999990001", status="active")
    now = clock.now()
    got = await lifecycle.cooldown(app, chip.id, minutos=60, motivo="403")
    assert got.cooldown_until == now + timedelta(minutes=60) and got.in_cooldown(now)
    got = await lifecycle.cooldown(app, chip.id, minutos=5, motivo="429")
    assert got.cooldown_until == now + timedelta(minutes=60) and got.cooldown_reason == "403"
    assert got.status == "active"  # a window, not a status
    clock.advance(minutes=61)
    assert not got.in_cooldown(clock.now())
    got = await lifecycle.cooldown(app, chip.id, minutos=10, motivo="manual")
    assert got.in_cooldown(clock.now())
    got = await lifecycle.cooldown(app, chip.id, minutos=0, motivo="operator ended it")
    assert got.cooldown_until is None
    events = await _rows(app, "SELECT kind FROM chip_eventos WHERE chip_id = %s", chip.id)
    assert [e["kind"] for e in events] == ["cooldown"] * 4


async def test_ban_recomputes_at_once_and_alerts(app: App) -> None:
    chip = await pool.add(
        app, instance="c1", telefone="11999990001", status="active", trust_score=85
    )
    done = await lifecycle.ban(app, chip.id, motivo="banned by WhatsApp")
    assert done.chip.status == "banned" and done.chip.banned_at is not None
    assert (done.chip.trust_score, done.chip.trust_level) == (0, "critico")
    assert done.trust is not None and done.trust["alerted"] is True
    alerts = await _rows(app, "SELECT kind, severity FROM alerts")
    assert alerts == [{"kind": "chip.trust_low", "severity": "critical"}]


async def _medico_with_conversa(app: App, tel: str, chip_id: int, last_at: Any) -> tuple[int, int]:
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO medicos (telefone, nome) VALUES (%s, 'Dra. Teste') RETURNING id", (tel,)
        )
        medico = (await cur.fetchone())["id"]  # type: ignore[index]
        cur = await conn.execute(
            "INSERT INTO conversas (medico_id, chip_id, last_message_at) VALUES (%s, %s, %s)"
            " RETURNING id",
            (medico, chip_id, last_at),
        )
        conversa = (await cur.fetchone())["id"]  # type: ignore[index]
        await conn.execute(
            "INSERT INTO chip_afinidade (medico_id, chip_id, enviadas, respostas, last_at)"
            " VALUES (%s, %s, 5, 2, %s)",
            (medico, chip_id, last_at),
        )
    return medico, conversa


async def test_demote_migrates_conversations_with_affinity_and_continuation(
    app: App, clock: FrozenClock
) -> None:
    old = await pool.add(app, instance="old", telefone="11999990001", status="active")
    new = await pool.add(app, instance="new", telefone="11999990002", status="active",
                         trust_score=70)  # fmt: skip
    now = clock.now()
    m1, c1 = await _medico_with_conversa(app, "+5511988880001", old.id, now - timedelta(hours=1))
    m2, c2 = await _medico_with_conversa(app, "+5511988880002", old.id, now - timedelta(days=3))
    done = await lifecycle.demote(app, old.id, motivo="health", actor=audit.Actor("ana"))
    assert {(m["conversa_id"], m["to_chip"]) for m in done.migrated} == {(c1, new.id), (c2, new.id)}
    rows = await _rows(app, "SELECT id, chip_id FROM conversas ORDER BY id")
    assert [r["chip_id"] for r in rows] == [new.id, new.id]
    moves = await migration.list_migrations(app, old.id)
    assert {m["ator"] for m in moves} == {"ana"} and len(moves) == 2
    # only the recent conversation gets a continuation message
    recent = next(m for m in done.migrated if m["conversa_id"] == c1)
    stale = next(m for m in done.migrated if m["conversa_id"] == c2)
    assert recent["continuacao_id"] is not None and stale["continuacao_id"] is None
    fila = await _rows(app, "SELECT conversa_id, tipo, telefone FROM fila_mensagens")
    assert fila == [{"conversa_id": c1, "tipo": "resposta", "telefone": "+5511988880001"}]
    aff = await _rows(app, "SELECT medico_id, chip_id, respostas FROM chip_afinidade ORDER BY 1")
    assert aff == [
        {"medico_id": m1, "chip_id": new.id, "respostas": 2},
        {"medico_id": m2, "chip_id": new.id, "respostas": 2},
    ]


def test_trust_explain_and_recalc_replace_a_seeded_score(cli: Any) -> None:
    r = cli("chips", "add", "--instance", "c1", "--telefone", "11999990001", "--status",
            "active", "--trust", "85", "--json")  # fmt: skip
    chip_id = json.loads(r.stdout)["id"]
    r = cli("chips", "trust", str(chip_id), "--json")
    assert r.exit_code == 0, r.output
    (explained,) = json.loads(r.stdout)
    assert explained["before"] == 85 and explained["trust_score"] < 60  # no data behind it
    assert set(explained["factors"]) == {
        "age", "delivery", "response", "bidirectional", "media", "errors", "blocks", "phase",
    }  # fmt: skip
    assert json.loads(cli("chips", "list", "--json").stdout)[0]["trust_score"] == 85
    r = cli("chips", "trust", str(chip_id), "--recalc", "--json")
    assert r.exit_code == 0, r.output
    (out,) = json.loads(r.stdout)
    assert out["trust_score"] == explained["trust_score"]
    (stored,) = json.loads(cli("chips", "list", "--json").stdout)
    assert stored["trust_source"] == "computed"
    assert stored["trust_score"] == explained["trust_score"]
    r = cli("chips", "trust", str(chip_id))
    assert r.exit_code == 0 and "delivery" in r.stdout


def test_cli_operator_actions_are_audited_with_the_operator(cli: Any) -> None:
    def run(*args: str) -> Any:
        r = cli("chips", *args, "--json", "--operador", "ana")
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout)

    chip_id = run("add", "--instance", "c1", "--telefone", "11999990001", "--status", "ready")["id"]
    assert run("promote", str(chip_id))["chip"]["status"] == "active"
    cooled = run("cooldown", str(chip_id), "--minutos", "15", "--motivo", "spam reports")
    assert cooled["cooldown_reason"] == "spam reports" and cooled["cooldown_until"]
    assert run("demote", str(chip_id), "--motivo", "manual check")["chip"]["status"] == "degraded"
    run("trust", str(chip_id), "--recalc")
    banned = run("ban", str(chip_id), "--motivo", "banido pelo WhatsApp")
    assert banned["chip"]["status"] == "banned" and banned["chip"]["trust_score"] == 0
    r = cli("chips", "promote", str(chip_id))
    assert r.exit_code == 5 and "banned" in r.stderr  # final
    r = cli("chips", "show", str(chip_id), "--json")
    shown = json.loads(r.stdout)
    assert [t["para"] for t in shown["transitions"]] == [
        "banned", "degraded", "active", "ready",
    ]  # fmt: skip
    assert {t["ator"] for t in shown["transitions"]} == {"ana"}
    r = cli("chips", "demote", str(chip_id))
    assert r.exit_code == 2  # --motivo is required
    assert cli("chips", "sync", "--json").exit_code == 0


async def test_every_operator_action_has_an_audit_row(app: App) -> None:
    ana = audit.Actor("ana")
    chip = await pool.add(app, instance="c1", telefone="11999990001", status="ready", actor=ana)
    await lifecycle.promote(app, chip.id, actor=ana)
    await lifecycle.cooldown(app, chip.id, minutos=5, motivo="x", actor=ana)
    await lifecycle.demote(app, chip.id, motivo="x", actor=ana)
    await scoring.trust_report(app, chip.id, recalc=True, actor=ana)
    await lifecycle.ban(app, chip.id, motivo="x", actor=ana)
    rows = await _rows(app, "SELECT acao, operador FROM audit_log ORDER BY id")
    assert [r["acao"] for r in rows] == [
        "chips.add", "chips.active", "chips.cooldown", "chips.degraded", "chips.trust_recalc",
        "chips.banned",
    ]  # fmt: skip
    assert {r["operador"] for r in rows} == {"ana"}


async def test_two_moves_in_the_window_queue_one_new_number_message(
    app: App, clock: FrozenClock
) -> None:
    """Demote chip 1 (→ chip 3), then ban chip 3 (→ chip 2): one continuation message,
    still queued, sent by whichever chip holds the conversation; none once one was sent."""
    c1 = await pool.add(app, instance="c1", telefone="11999990001", status="active")
    c2 = await pool.add(app, instance="c2", telefone="11999990002", status="active",
                        trust_score=60)  # fmt: skip
    c3 = await pool.add(app, instance="c3", telefone="11999990003", status="active",
                        trust_score=70)  # fmt: skip
    _, conversa = await _medico_with_conversa(app, "+5511988880001", c1.id, clock.now())
    first = await lifecycle.demote(app, c1.id, motivo="health")
    [held_by] = [m["to_chip"] for m in first.migrated]
    assert held_by in (c2.id, c3.id)
    clock.advance(seconds=6)
    second = await lifecycle.ban(app, held_by, motivo="banned")
    [now_on] = [m["to_chip"] for m in second.migrated]
    assert now_on in (c2.id, c3.id) and now_on != held_by
    fila = await _rows(app, "SELECT id, conversa_id, status FROM fila_mensagens")
    assert len(fila) == 1 and fila[0]["conversa_id"] == conversa
    assert second.migrated[0]["continuacao_id"] == fila[0]["id"]
    conv = await _rows(app, "SELECT chip_id FROM conversas WHERE id = %s", conversa)
    assert conv == [{"chip_id": now_on}]  # the selection prefers the conversation's chip
    async with app.pool.connection() as conn:
        await conn.execute("UPDATE fila_mensagens SET status = 'enviada', enviada_em = now()")
    await pool.add(app, instance="c4", telefone="11999990004", status="active", trust_score=65)
    third = await lifecycle.demote(app, now_on, motivo="health")
    assert third.migrated[0]["continuacao_id"] is None
    assert len(await _rows(app, "SELECT id FROM fila_mensagens")) == 1
