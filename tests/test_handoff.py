"""The handoff at library level: the state machine, Chatwoot through its sandbox (real HTTP,
real client), Chatwoot down, the way back from signed webhooks through the shim, the CLI."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from julia import handoff
from julia.core.app import App
from julia.core.clock import FrozenClock
from julia.core.errors import InvalidTransition
from julia.core.metrics import HANDOFF_REPLIES_DROPPED
from julia.fila.queue import NewMessage, enqueue
from julia.handoff import control, states, webhooks
from julia.handoff.chatwoot import Chatwoot
from julia.inbox import chatwoot_signature
from julia.sandbox import chatwoot as cw_sandbox
from julia.sandbox.chatwoot import ChatwootState
from julia.settings import Settings

PHONE = "+5511987654321"
SECRET = "cw-secret"
CW = tuple[str, ChatwootState]


@pytest.fixture
def cw() -> Iterator[CW]:
    with cw_sandbox.running(secret=SECRET) as running:
        yield running


def chatwoot_settings(settings: Settings, url: str) -> Settings:
    return settings.model_copy(
        update={
            "chatwoot_url": url, "chatwoot_api_token": SecretStr("tok"),
            "chatwoot_account_id": 1, "chatwoot_inbox_id": 1,
            "chatwoot_webhook_secret": SecretStr(SECRET), "handoff_webhook_settle_s": 0.0,
            "retry_base_s": 0.01, "retry_cap_s": 0.02,
        }
    )  # fmt: skip


@pytest.fixture
async def happ(settings: Settings, clock: FrozenClock, cw: CW) -> AsyncIterator[App]:
    async with App.open(chatwoot_settings(settings, cw[0]), clock=clock) as opened:
        yield opened


@pytest.fixture
async def shim(happ: App) -> AsyncIterator[httpx.AsyncClient]:
    from shim.app import create_app

    transport = httpx.ASGITransport(app=create_app(julia=happ))
    async with httpx.AsyncClient(transport=transport, base_url="http://shim") as c:
        yield c


async def conversa(app: App, phone: str = PHONE) -> int:
    """A doctor with a conversation: two messages from them, one reply sent by Júlia."""
    now = app.clock.now()
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO medicos (telefone, nome) VALUES (%s, 'Dra. Ana') RETURNING id", (phone,)
        )
        row = await cur.fetchone()
        assert row is not None
        medico = int(row["id"])
        cur = await conn.execute(
            "INSERT INTO conversas (medico_id, status) VALUES (%s, 'ativa') RETURNING id",
            (medico,),
        )
        row = await cur.fetchone()
        assert row is not None
        cid = int(row["id"])
        for i, text in enumerate(["oi, tem plantão?", "sábado"]):
            await conn.execute(
                "INSERT INTO interacoes (conversa_id, medico_id, direcao, conteudo,"
                " provider_message_id, created_at) VALUES (%s, %s, 'entrada', %s, %s, %s)",
                (cid, medico, text, f"in{i}", now - timedelta(minutes=10 - i)),
            )
    sent = await enqueue(
        app, NewMessage("Tenho sim, no Hospital X", tipo="resposta", medico_id=medico,
                        conversa_id=cid)
    )  # fmt: skip
    async with app.pool.connection() as conn:
        await conn.execute(
            "UPDATE fila_mensagens SET status = 'enviada', enviada_em = %s WHERE id = %s",
            (now - timedelta(minutes=5), sent.id),
        )
    return cid


async def deliver_webhooks(shim: httpx.AsyncClient, state: ChatwootState, clock: Any) -> None:
    """Post what the sandbox recorded as Chatwoot webhooks, signed, to the shim."""
    for payload in list(state.webhooks):
        raw = json.dumps(payload).encode()
        ts = str(int(clock.now().timestamp()))
        headers = {"X-Chatwoot-Signature": chatwoot_signature(SECRET, ts, raw),
                   "X-Chatwoot-Timestamp": ts, "Content-Type": "application/json"}  # fmt: skip
        r = await shim.post("/webhooks/chatwoot", content=raw, headers=headers)
        assert r.status_code == 200, r.text
    state.webhooks.clear()


def wait_webhooks(state: ChatwootState, n: int) -> None:
    deadline = time.monotonic() + 5
    while len(state.webhooks) < n and time.monotonic() < deadline:
        time.sleep(0.02)


# --- the state machine -------------------------------------------------------------------


def test_the_transition_table_allows_only_its_moves() -> None:
    assert states.next_state("julia", "solicitar") == "pendente"
    assert states.next_state("pendente", "assumir") == "em_atendimento"
    assert states.next_state("em_atendimento", "devolver") == "julia"
    for state, event in [("julia", "devolver"), ("pendente", "solicitar"),
                         ("em_atendimento", "assumir")]:  # fmt: skip
        with pytest.raises(InvalidTransition):
            states.next_state(state, event)
    assert {states.controlled_by(s) for s in states.STATES} == {"julia", "humano"}


async def test_request_opens_chatwoot_with_history_note_and_label(happ: App, cw: CW) -> None:
    cid = await conversa(happ)
    h = await handoff.request(happ, conversa_id=cid, reason="pediu: atendente", trigger="keyword")
    assert h.new and h.status == "pendente" and h.notified_at is not None
    assert await handoff.controlled_by(happ, cid) == "humano"
    moves = await control.transitions(happ, cid)
    assert [(m["de"], m["para"], m["evento"], m["actor"]) for m in moves] == [
        ("julia", "pendente", "solicitar", "julia")
    ]
    [conv] = cw[1].conversations.values()
    assert cw[1].contacts[conv["contact_id"]]["phone_number"] == PHONE
    posted = [(m["message_type"], m["private"], m["content"]) for m in conv["messages"]]
    assert posted[:3] == [
        ("incoming", False, "oi, tem plantão?"),
        ("incoming", False, "sábado"),
        ("outgoing", False, "Tenho sim, no Hospital X"),
    ]
    kind, private, note = posted[3]
    assert kind == "outgoing"
    assert private and "pediu: atendente" in note and "sábado" in note  # summary + reason
    assert conv["labels"] == ["humano"] and conv["status"] == "open"
    # Asking again keeps the one open handoff and tells nobody twice.
    n = len(cw[1].calls)
    again = await handoff.request(happ, conversa_id=cid, reason="de novo", trigger="keyword")
    assert again.id == h.id and not again.new and len(cw[1].calls) == n


async def test_the_label_is_added_without_dropping_the_others(happ: App, cw: CW) -> None:
    client = Chatwoot(happ)
    cid = await conversa(happ)
    contact = await client.create_contact(PHONE, "Dra. Ana")
    assert contact.source_id
    conv = await client.create_conversation(contact.id, contact.source_id)
    await client.call("POST", f"/conversations/{conv}/labels", {"labels": ["vip", "sp"]})
    assert await client.add_label(conv, "humano") == ["vip", "sp", "humano"]
    assert cw[1].conversations[conv]["labels"] == ["vip", "sp", "humano"]
    # An existing contact is found by phone, not created twice.
    h = await handoff.request(happ, conversa_id=cid, reason="r", trigger="agente")
    assert h.notified_at is not None and len(cw[1].contacts) == 1


async def test_chatwoot_down_alerts_critical_and_the_handoff_holds(happ: App, cw: CW) -> None:
    cw[1].fault = cw_sandbox.Fault(status=503)
    cid = await conversa(happ)
    h = await handoff.request(happ, conversa_id=cid, reason="pediu: atendente", trigger="keyword")
    assert h.notified_at is None and h.notify_error and "503" in h.notify_error
    assert await handoff.is_human(happ, cid)
    assert len(cw[1].calls) == 3  # the first call, retried: 3 attempts
    async with happ.pool.connection() as conn:
        cur = await conn.execute("SELECT kind, severity, details FROM alerts ORDER BY id")
        rows = list(await cur.fetchall())
    assert [(r["kind"], r["severity"]) for r in rows] == [("handoff.not_notified", "critical")]
    assert rows[0]["details"]["handoff_id"] == h.id
    [listed] = await control.list_handoffs(happ, status="pendente")
    assert listed.id == h.id
    # Chatwoot back: the waiting job tries again and resumes.
    cw[1].fault = None
    await handoff.waiting(happ)
    assert (await control.get(happ, h.id)).notified_at is not None
    assert len(cw[1].conversations) == 1


async def test_waiting_alert_once_for_a_handoff_nobody_picked_up(
    happ: App, clock: FrozenClock
) -> None:
    cid = await conversa(happ)
    h = await handoff.request(happ, conversa_id=cid, reason="r", trigger="keyword")
    assert await handoff.waiting(happ) == []
    clock.advance(minutes=happ.settings.handoff_waiting_min + 1)
    [raised] = await handoff.waiting(happ)
    assert raised.alert.kind == "handoff.waiting" and str(h.id) in raised.alert.message
    assert await handoff.waiting(happ) == []


# --- the way back ------------------------------------------------------------------------


async def fila_humano(app: App) -> list[dict[str, Any]]:
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT texto, conversa_id, telefone FROM fila_mensagens WHERE tipo = 'humano'"
        )
        return list(await cur.fetchall())


async def test_operator_reply_is_queued_once_and_resolve_gives_control_back(
    happ: App, cw: CW, shim: httpx.AsyncClient, clock: FrozenClock
) -> None:
    cid = await conversa(happ)
    h = await handoff.request(happ, conversa_id=cid, reason="pediu", trigger="keyword")
    wait_webhooks(cw[1], 7)  # created, 4 messages, label, status... Júlia's own echoes
    await deliver_webhooks(shim, cw[1], clock)
    await webhooks.drain(happ)
    assert await fila_humano(happ) == []  # Júlia's own posts are not an operator's reply
    conv = h.chatwoot_conversation_id
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{cw[0]}/_sandbox/reply",
                            json={"conversation_id": conv, "content": "Oi, sou a Ana. Confirmo"
                                  " sábado amanhã cedo."})  # fmt: skip
    assert r.status_code == 200
    reply = list(cw[1].webhooks)
    await deliver_webhooks(shim, cw[1], clock)
    cw[1].webhooks.extend(reply)  # the same delivery again (a retry): acted on once
    await deliver_webhooks(shim, cw[1], clock)
    await webhooks.drain(happ)
    assert await fila_humano(happ) == [
        {"texto": "Oi, sou a Ana. Confirmo sábado amanhã cedo.", "conversa_id": cid,
         "telefone": PHONE}
    ]  # fmt: skip
    assert (await control.get(happ, h.id)).status == "em_atendimento"
    assert not await handoff.still_julia(happ, cid)

    async with httpx.AsyncClient() as http:
        await http.post(f"{cw[0]}/_sandbox/resolve", json={"conversation_id": conv})
    await deliver_webhooks(shim, cw[1], clock)
    await webhooks.drain(happ)
    assert await handoff.controlled_by(happ, cid) == "julia"
    done = await control.get(happ, h.id)
    assert done.status == "resolvido" and done.resolved_at is not None
    async with happ.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT tipo, conteudo FROM interacoes WHERE conversa_id = %s AND direcao = 'saida'"
            " ORDER BY id", (cid,),
        )  # fmt: skip
        history = [(r["tipo"], r["conteudo"]) for r in await cur.fetchall()]
    assert history[0] == ("humano", "Oi, sou a Ana. Confirmo sábado amanhã cedo.")
    assert history[1][0] == "nota_handoff"
    assert [m["evento"] for m in await control.transitions(happ, cid)] == [
        "solicitar", "assumir", "devolver"
    ]  # fmt: skip


async def test_removing_the_label_gives_control_back(
    happ: App, cw: CW, shim: httpx.AsyncClient, clock: FrozenClock
) -> None:
    cid = await conversa(happ)
    h = await handoff.request(happ, conversa_id=cid, reason="pediu", trigger="keyword")
    wait_webhooks(cw[1], 7)
    cw[1].webhooks.clear()
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{cw[0]}/_sandbox/unlabel",
                            json={"conversation_id": h.chatwoot_conversation_id,
                                  "label": "humano"})  # fmt: skip
    assert r.status_code == 200
    await deliver_webhooks(shim, cw[1], clock)
    await webhooks.drain(happ)
    assert await handoff.controlled_by(happ, cid) == "julia"


async def test_still_julia_counts_a_dropped_reply(happ: App) -> None:
    cid = await conversa(happ)
    assert await handoff.still_julia(happ, cid)
    before = HANDOFF_REPLIES_DROPPED._value.get()
    await handoff.request(happ, conversa_id=cid, reason="typed", trigger="chip", take=True)
    assert not await handoff.still_julia(happ, cid)
    assert HANDOFF_REPLIES_DROPPED._value.get() == before + 1


# --- the CLI -----------------------------------------------------------------------------


def test_cli_assumir_list_devolver_resolver_audited(
    settings: Settings, cli: Any, env: dict[str, str], cw: CW
) -> None:
    env.update({"JULIA_CHATWOOT_URL": cw[0], "JULIA_CHATWOOT_API_TOKEN": "tok",
                "JULIA_CHATWOOT_ACCOUNT_ID": "1", "JULIA_CHATWOOT_INBOX_ID": "1"})  # fmt: skip
    configured = chatwoot_settings(settings, cw[0])

    async def query(sql: str, *args: Any) -> list[dict[str, Any]]:
        async with App.open(configured) as app, app.pool.connection() as conn:
            return list(await (await conn.execute(sql, args)).fetchall())

    async def setup() -> int:
        async with App.open(configured) as app:
            return await conversa(app)

    cid = asyncio.run(setup())
    r = cli("handoff", "assumir", PHONE, "--motivo", "[red]queixa[/red] grave", "--json")
    assert r.exit_code == 0, r.output
    taken = json.loads(r.stdout)
    assert taken["status"] == "em_atendimento" and taken["telefone"] == "5511...4321"
    assert taken["notified_at"] is not None
    r = cli("handoff", "list", "--json")
    [item] = json.loads(r.stdout)
    assert {"id", "telefone", "status", "reason", "created_at"} <= set(item)
    assert PHONE[1:] not in r.stdout and item["reason"] == "[red]queixa[/red] grave"
    r = cli("handoff", "list")
    assert r.exit_code == 0 and "[red]" in r.stdout  # shown as text, not markup
    r = cli("handoff", "show", str(taken["id"]))
    assert r.exit_code == 0 and "assumir" in r.stdout
    r = cli("handoff", "devolver", PHONE, "--nota", "prometi ligar amanhã")
    assert r.exit_code == 0, r.output
    [conv] = asyncio.run(query("SELECT controlled_by FROM conversas WHERE id = %s", cid))
    assert conv["controlled_by"] == "julia"
    assert cw[1].conversations[taken["chatwoot_conversation_id"]]["status"] == "resolved"
    r = cli("handoff", "resolver", str(taken["id"]), "--nota", "x")
    assert r.exit_code != 0 and len(r.output.strip().splitlines()) == 1
    r = cli("handoff", "assumir", "+5511000", "--motivo", "x")
    assert r.exit_code != 0 and len(r.output.strip().splitlines()) == 1
    assert cli("handoff", "show", "999").exit_code != 0
    acoes = asyncio.run(query("SELECT acao, operador FROM audit_log ORDER BY id"))
    assert [(x["acao"], x["operador"]) for x in acoes] == [
        ("handoff.assumir", "tester"), ("handoff.devolver", "tester")
    ]  # fmt: skip
    [note] = asyncio.run(query(
        "SELECT conteudo FROM interacoes WHERE tipo = 'nota_handoff' AND conversa_id = %s", cid
    ))  # fmt: skip
    assert "prometi ligar amanhã" in note["conteudo"]


async def test_humano_set_before_handoffs_existed_is_adopted_and_told(happ: App, cw: CW) -> None:
    cid = await conversa(happ)
    async with happ.pool.connection() as conn:
        await conn.execute("UPDATE conversas SET controlled_by = 'humano' WHERE id = %s", (cid,))
    h = await handoff.request(happ, conversa_id=cid, reason="pediu", trigger="keyword")
    assert h.new and h.status == "em_atendimento" and h.notified_at is not None
    assert [m["evento"] for m in await control.transitions(happ, cid)] == ["adotar"]
    assert len(cw[1].conversations) == 1


async def test_the_overview_lists_waiting_handoffs_with_status_and_reason(happ: App) -> None:
    from julia.ops.overview import handoffs_waiting

    cid = await conversa(happ)
    h = await handoff.request(happ, conversa_id=cid, reason="pediu: atendente", trigger="keyword")
    view = await handoffs_waiting(happ)
    assert view["count"] == 1
    [item] = view["items"]
    assert (item["handoff_id"], item["status"], item["reason"]) == (
        h.id, "pendente", "pediu: atendente"
    )  # fmt: skip
    assert item["telefone"] == "5511...4321"
