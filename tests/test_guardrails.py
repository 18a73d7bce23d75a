"""Guardrails: one verdict per doctor and type, the send-time check, blocks, consent, LGPD."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from campanha_seed import count, phone, seed_medicos, seed_sent
from julia.core import audit
from julia.core.app import App
from julia.core.errors import Conflict, ImportRejected, InvalidInput
from julia.domain import medicos
from julia.fila import queue
from julia.fila.queue import NewMessage
from julia.guardrails import blocks, lgpd, rules
from julia.outbound import send
from julia.resilience import ratelimit
from julia.sandbox.gateway import control as sandbox

OP = audit.Actor("tester")


async def test_check_explains_each_rule_and_the_contact_cap_can_be_turned_off(app: App) -> None:
    ids = await seed_medicos(app, 2)
    v = await rules.check(app, phone(0), "campanha")
    assert v.allowed and v.reasons in ([], ["horario_comercial"])
    await seed_sent(app, [ids[0]], app.clock.now() - timedelta(days=2))
    v = await rules.check(app, phone(0), "campanha")
    assert not v.allowed and v.reasons[0] == "limite_contato"
    assert (await rules.check(app, phone(0), "resposta")).allowed  # the cap is for first contacts
    await rules.set_contact_cap(app, False, motivo="mutirão de fim de ano", actor=OP)
    assert (await rules.check(app, phone(0), "campanha")).allowed
    [bp] = await rules.bypasses(app)
    assert (bp["regra"], bp["operador"], bp["motivo"]) == (
        "limite_contato", "tester", "mutirão de fim de ano")  # fmt: skip
    await rules.set_contact_cap(app, True, motivo="back to normal", actor=OP)
    assert not (await rules.check(app, phone(0), "campanha")).allowed
    # a human in control silences Júlia (not the operator)
    async with app.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO conversas (medico_id, controlled_by) VALUES (%s, 'humano')", (ids[1],)
        )
    assert (await rules.check(app, phone(1), "resposta")).reasons == ["controle_humano"]
    assert (await rules.check(app, phone(1), "humano")).allowed


async def test_manual_block_and_unblock(app: App, cli: Any) -> None:
    await seed_medicos(app, 1)
    r = await asyncio.to_thread(
        cli, "guardrails", "block", "--telefone", phone(0), "--motivo", "pediu por telefone"
    )
    assert r.exit_code == 0, r.stderr
    out = json.loads(
        (
            await asyncio.to_thread(cli, "guardrails", "check", "--telefone", phone(0), "--json")
        ).stdout
    )
    assert out["allowed"] is False and out["reasons"][0] == "bloqueio_manual"
    assert phone(0) not in json.dumps(out)  # masked
    for tipo in ("resposta", "followup", "humano"):
        assert (await rules.check(app, phone(0), tipo)).reasons[0] == "bloqueio_manual"
    assert (
        await asyncio.to_thread(
            cli, "guardrails", "unblock", "--telefone", phone(0), "--motivo", "ok"
        )
    ).exit_code == 0
    assert (await rules.check(app, phone(0), "resposta")).allowed
    again = await asyncio.to_thread(
        cli, "guardrails", "unblock", "--telefone", phone(0), "--motivo", "ok"
    )
    assert again.exit_code != 0 and "is not blocked" in again.stderr
    bad = await asyncio.to_thread(cli, "guardrails", "block", "--telefone", "123", "--motivo", "x")
    assert bad.exit_code != 0 and len(bad.stderr.strip().splitlines()) == 1


async def test_the_queue_asks_the_guardrails_at_send_time(sandbox_app: App) -> None:
    app = sandbox_app
    ids = await seed_medicos(app, 3)
    await blocks.block(app, phone(0), motivo="pediu", actor=OP)
    out = await queue.enqueue_many(app, [
        NewMessage("oi 0", telefone=phone(0), tipo="resposta"),
        NewMessage("campanha 1", telefone=phone(1), tipo="campanha"),
        NewMessage("oi 2", telefone=phone(2), tipo="resposta"),
    ])  # fmt: skip
    await seed_sent(app, [ids[1]], app.clock.now() - timedelta(hours=1))  # contacted since
    report = await send.process_batch(app, "w1", await queue.claim(app, "w1", 10))
    assert (report.sent, report.blocked) == (1, 2)
    m0, m1, _ = [await queue.get(app, i) for i in out.ids]
    assert (m0.status, m0.outcome) == ("bloqueada", "BLOCKED_GUARDRAIL")
    assert (m0.motivo or "").startswith("bloqueio_manual:")
    assert (m1.outcome, (m1.motivo or "").split(":")[0]) == ("BLOCKED_GUARDRAIL", "limite_contato")
    assert [m["text"] for m in sandbox(app, "/_sandbox/messages")] == ["oi 2"]


async def test_optin_undoes_an_opt_out_by_an_operator_only(app: App, cli: Any) -> None:
    await seed_medicos(app, 1)
    await medicos.optout(app, phone(0), motivo="pare (engano)", actor=OP)
    with pytest.raises(InvalidInput, match="named operator"):
        await blocks.optin(app, phone(0), motivo="the model thinks so", actor=audit.AUTOMATION)
    r = await asyncio.to_thread(
        cli, "medicos", "optin", phone(0), "--motivo", "escreveu 'pare' por engano"
    )
    assert r.exit_code == 0, r.stderr
    assert not (await medicos.get_by_phone(app, phone(0))).opted_out
    assert (await rules.check(app, phone(0), "resposta")).allowed
    assert await count(app, "SELECT count(*) FROM medicos_consentimentos WHERE acao = 'optin'") == 1
    assert await count(app, "SELECT count(*) FROM audit_log WHERE acao = 'medicos.optin'") == 1
    with pytest.raises(Conflict):
        await blocks.optin(app, phone(0), motivo="again", actor=OP)


NAME = "Zuleica Tavares Quintanilha"


async def _seed_everywhere(app: App) -> tuple[int, str]:
    [mid] = await seed_medicos(app, 1)
    tel, dig = phone(0), phone(0)[1:]
    now = app.clock.now()
    async with app.pool.connection() as conn:
        await conn.execute("UPDATE medicos SET nome = %s, preferencias = %s WHERE id = %s",
                           (NAME, json.dumps({"turno": "noite"}), mid))  # fmt: skip
        cur = await conn.execute(
            "INSERT INTO conversas (medico_id, resumo) VALUES (%s, %s) RETURNING id",
            (mid, f"{NAME} quer plantões noturnos"),
        )
        conversa = (await cur.fetchone() or {})["id"]
        await conn.execute(
            "INSERT INTO interacoes (conversa_id, medico_id, direcao, conteudo, created_at)"
            " VALUES (%s, %s, 'entrada', 'sou a Zuleica', %s)",
            (conversa, mid, now),
        )
        await conn.execute(
            "INSERT INTO mensagens_recebidas (provider, instance, provider_message_id, evento,"
            " telefone, remote_jid, conversa_key, tipo, texto, push_name, received_at, payload)"
            " VALUES ('evolution', 'julia', 'in-1', 'messages.upsert', %s, %s, %s, 'texto',"
            " 'oi', %s, %s, %s)",
            (tel, f"{dig}@s.whatsapp.net", tel, NAME, now,
             json.dumps({"pushName": NAME, "remoteJid": f"{dig}@s.whatsapp.net"})),
        )  # fmt: skip
        await conn.execute(
            "INSERT INTO inbox_turnos (conversa_key, medico_id, conversa_id, mensagens, texto,"
            " status, created_at) VALUES (%s, %s, %s, '{1}', 'oi', 'parado', %s)",
            (tel, mid, conversa, now),
        )
        cur = await conn.execute(
            "INSERT INTO fila_mensagens (medico_id, telefone, tipo, texto, agendar_para,"
            " proxima_tentativa_em, status, created_at, updated_at, provider_message_id)"
            " VALUES (%s, %s, 'resposta', %s, %s, %s, 'pendente', %s, %s, 'out-1') RETURNING id",
            (mid, tel, f"Oi {NAME}", now, now, now, now),
        )
        fid = (await cur.fetchone() or {})["id"]
        await conn.execute("UPDATE fila_mensagens SET status = 'cancelada', motivo = %s"
                           " WHERE id = %s", (f"to {NAME}", fid))  # fmt: skip
        await conn.execute(
            "INSERT INTO mensagens_acks (provider, instance, provider_message_id, status,"
            " remote_jid, at, payload) VALUES ('evolution', 'julia', 'out-1', 'READ', %s, %s, %s)",
            (f"{dig}@s.whatsapp.net", now, json.dumps({"remoteJid": dig})),
        )
        await conn.execute(
            "INSERT INTO chips (instance, telefone, provider, status, trust_score, trust_level,"
            " trust_source, trust_updated_at, created_at, updated_at)"
            " VALUES ('c9', '+5511977776666', 'evolution', 'active', 90, 'verde', 'manual',"
            " %s, %s, %s)",
            (now, now, now),
        )
        cur = await conn.execute("SELECT id FROM chips WHERE instance = 'c9'")
        chip = (await cur.fetchone() or {})["id"]
        await conn.execute(
            "INSERT INTO chip_eventos (chip_id, kind, telefone, mensagem_id, at)"
            " VALUES (%s, 'sent', %s, %s, %s)",
            (chip, tel, fid, now),
        )
        await conn.execute(
            "INSERT INTO chip_selection_log (tipo, telefone, candidates, motivo, threshold, at)"
            " VALUES ('resposta', %s, '[]', 'x', 40, %s)",
            (tel, now),
        )
        await conn.execute(
            "INSERT INTO chip_afinidade (medico_id, chip_id, last_at) VALUES (%s, %s, %s)",
            (mid, chip, now),
        )
        await conn.execute(
            "INSERT INTO business_events (tipo, medico_id, props) VALUES ('x', %s, %s)",
            (mid, json.dumps({"nome": NAME})),
        )
        cur = await conn.execute(
            "INSERT INTO handoffs (conversa_id, medico_id, reason, trigger, actor, summary,"
            " chatwoot, created_at, updated_at) VALUES (%s, %s, 'pediu pessoa', 'keyword',"
            " 'julia', %s, %s, %s, %s) RETURNING id",
            (conversa, mid, f"{NAME} pediu um atendente",
             json.dumps({"contact_id": 9, "telefone": tel}), now, now),
        )  # fmt: skip
        handoff = (await cur.fetchone() or {})["id"]
        await conn.execute(
            "INSERT INTO agent_memorias (medico_id, texto, created_at) VALUES (%s, %s, %s)",
            (mid, f"{NAME} prefere noites", now),
        )
        await conn.execute(
            "INSERT INTO handoff_transicoes (conversa_id, handoff_id, de, para, evento, reason,"
            " actor, created_at) VALUES (%s, %s, 'julia', 'pendente', 'pedir', %s, 'julia', %s)",
            (conversa, handoff, f"{NAME} pediu", now),
        )
        await conn.execute(
            "INSERT INTO handoff_chatwoot_posts (chatwoot_message_id, handoff_id, created_at)"
            " VALUES (77, %s, %s)", (handoff, now),
        )  # fmt: skip
    await ratelimit.take(app, tipo="prospeccao", telefone=tel, chip_id="7")
    await ratelimit.override(app, tel, "plantão urgente", OP)
    await blocks.block(app, tel, motivo="pediu pausa", actor=OP)
    await medicos.optout(app, tel, motivo="pare", actor=OP)
    await blocks.optin(app, tel, motivo="voltou", actor=OP)
    return mid, dig


async def test_exportar_then_esquecer_leaves_nothing_readable(app: App, cli: Any) -> None:
    _, dig = await _seed_everywhere(app)
    r = await asyncio.to_thread(cli, "medicos", "exportar", phone(0))
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["perfil"]["nome"] == NAME and data["perfil"]["preferencias"] == {"turno": "noite"}
    sections = "conversas interacoes mensagens_recebidas mensagens turnos consentimentos"
    for section in (sections + " bloqueios auditoria rate_limit_overrides").split():
        assert data[section], section

    r = await asyncio.to_thread(
        cli, "medicos", "esquecer", phone(0), "--motivo", "pedido LGPD de 01/12", "--json"
    )
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["removed"]["medicos"] == 1

    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            " AND table_type = 'BASE TABLE'"
        )
        tables = [r["table_name"] for r in await cur.fetchall()]
        leftovers = {}
        for t in tables:
            cur = await conn.execute(
                f'SELECT count(*) AS n FROM "{t}" x WHERE x::text ILIKE %s OR x::text ILIKE %s'
                " OR x::text ILIKE %s",
                (f"%{dig}%", "%Zuleica%", "%Quintanilha%"),
            )
            n = (await cur.fetchone() or {"n": 0})["n"]
            if n:
                leftovers[t] = n
    assert leftovers == {}
    keys = [k async for k in app.redis.scan_iter(match=f"*{dig}*")]
    assert keys == []
    assert await count(app, "SELECT count(*) FROM medicos_esquecidos") == 1
    q = "SELECT count(*) FROM guardrail_bypasses WHERE regra = 'limite_diario'"
    assert await count(app, q) == 1  # the rate-limit override is listed as a bypass
    assert await count(app, "SELECT count(*) FROM audit_log WHERE acao = 'medicos.esquecer'") == 1

    # never contacted again, even if someone re-imports the number
    await seed_medicos(app, 1)
    assert (await rules.check(app, phone(0), "resposta")).reasons[0] == "esquecido"
    async with app.pool.connection() as conn:
        cur = await conn.execute("SELECT id FROM medicos WHERE telefone = %s", (phone(0),))
        new_id = (await cur.fetchone() or {})["id"]
        assert (await rules.screen(app, conn, [new_id], "campanha"))[new_id] == ["esquecido"]


async def test_an_erased_phone_is_refused_by_the_doctors_import(
    app: App, cli: Any, tmp_path: Path
) -> None:
    await seed_medicos(app, 1)
    await lgpd.esquecer(app, phone(0), motivo="pedido LGPD", actor=OP)
    path = tmp_path / "medicos.csv"
    path.write_text(f"nome,telefone\nDr. Volta,{phone(0)}\nDra. Nova,{phone(1)}\n")
    with pytest.raises(ImportRejected) as info:
        await medicos.import_medicos(app, path)
    assert [(e.line, e.reason) for e in info.value.errors] == [(2, medicos.ERASED)]
    assert await count(app, "SELECT count(*) FROM medicos") == 0
    r = await asyncio.to_thread(cli, "medicos", "import", str(path))
    assert r.exit_code != 0 and len(r.stderr.strip().splitlines()) == 1
    assert "line 2: telefone was erased under LGPD" in r.stderr and phone(0) not in r.stderr
    result = await medicos.import_medicos(app, path, skip_invalid=True)
    assert result.inserted == 1 and [e.line for e in result.skipped] == [2]
    q = "SELECT count(*) FROM medicos WHERE telefone = %s"
    assert (await count(app, q, phone(0)), await count(app, q, phone(1))) == (0, 1)
