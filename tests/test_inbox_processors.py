"""The processor pipeline on real turns: opt-out, human takeover, groups, hours, bots, media,
handoff, presence through the sandbox gateway (Evolution wire protocol, a real server here)."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from julia.core.app import App
from julia.core.clock import FrozenClock
from julia.fila.queue import NewMessage, enqueue
from julia.gateways import registry
from julia.gateways.evolution import EvolutionGateway
from julia.inbox import consumer, turns_awaiting_reply
from julia.inbox.consumer import Turn
from julia.inbox.processors import default_processors, next_opening, texts
from julia.sandbox.gateway import SandboxState
from julia.sandbox.gateway import create_app as create_sandbox
from julia.sandbox.server import in_thread
from julia.settings import Settings

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TEXT = json.loads((FIXTURES / "evolution_messages_upsert_text.json").read_text())
AUDIO = json.loads((FIXTURES / "evolution_messages_upsert_audio.json").read_text())
PHONE = "+5511987654321"
_seq = iter(range(1, 10**6))


def upsert(text: str | None = None, number: str = PHONE[1:], **key: Any) -> dict[str, Any]:
    body = copy.deepcopy(TEXT)
    body["data"]["key"] = {
        "remoteJid": key.pop("remoteJid", f"{number}@s.whatsapp.net"),
        "fromMe": False,
        "id": f"P{next(_seq):08d}",
    } | key
    body["data"]["message"] = {"conversation": text}
    return body


class RecordCalls:
    """ASGI middleware noting each request's path and JSON body as the sandbox receives it
    (the body read whole first, then handed on unchanged)."""

    def __init__(self, app: ASGIApp, calls: list[tuple[str, Any]]) -> None:
        self.app, self.calls = app, calls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        self.calls.append((scope["path"], json.loads(body or b"null")))
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # the disconnect, when it comes
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


@pytest.fixture
async def sandbox(app: App) -> AsyncIterator[tuple[SandboxState, list[tuple[str, Any]]]]:
    """The sandbox Evolution gateway (a real server) as the app's gateway; yields its state
    and every call it received."""
    sandbox_app = create_sandbox()
    calls: list[tuple[str, Any]] = []
    sandbox_app.add_middleware(RecordCalls, calls=calls)
    with in_thread(sandbox_app, "127.0.0.1", 0, "sandbox gateway") as port:
        gateway = EvolutionGateway(registry.session(app), f"http://127.0.0.1:{port}", None)
        app.extensions["gateways"] = {"evolution": gateway}
        yield sandbox_app.state.sandbox, calls


async def say(client: httpx.AsyncClient, app: App, clock: FrozenClock, *bodies: Any) -> Turn:
    """Post the bodies as one burst and run the turn they make."""
    for body in bodies:
        r = await client.post("/webhooks/evolution", json=body)
        assert r.status_code == 200 and r.json()["status"] == "accepted", r.text
    clock.advance(5)
    turn = await consumer.step(app, "w1")
    assert turn is not None and turn.erro is None, turn
    return turn


async def one(app: App, sql: str, *params: Any) -> Any:
    async with app.pool.connection() as conn:
        cur = await conn.execute(sql, params)
        return await cur.fetchone()


async def fila(app: App) -> list[dict[str, Any]]:
    async with app.pool.connection() as conn:
        cur = await conn.execute("SELECT texto, status, outcome FROM fila_mensagens ORDER BY id")
        return list(await cur.fetchall())


# --- opt-out -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["PARE", "Sair.", "Não quero mais receber essas mensagens", "pare de me mandar mensagem",
     "quero me descadastrar", "Por favor me tira da lista!", "descadastrar",
     "NÃO ME MANDE MAIS NADA", "stop"],
)  # fmt: skip
def test_portuguese_optout_phrases_are_recognised(text: str) -> None:
    assert texts.optout_phrase(text)


@pytest.mark.parametrize(
    "text",
    ["tem plantão sábado?", "vou sair do plantão às 19h", "não quero plantão noturno",
     "pode parar no estacionamento?", "as paredes do hospital", "para quando é a vaga?",
     "quero saber mais", ""],
)  # fmt: skip
def test_ordinary_messages_are_not_optouts(text: str) -> None:
    assert texts.optout_phrase(text) is None


async def test_optout_stops_blocks_the_queue_and_confirms_once(
    client: httpx.AsyncClient, app: App, clock: FrozenClock, sandbox: Any
) -> None:
    state, _ = sandbox
    await say(client, app, clock, upsert("oi, tudo bem?"))
    medico = await one(app, "SELECT id FROM medicos WHERE telefone = %s", PHONE)
    for texto in ("Temos plantão sábado!", "Lembrete: plantão sábado"):
        await enqueue(app, NewMessage(texto=texto, medico_id=medico["id"], tipo="followup"))
    turn = await say(client, app, clock, upsert("Não quero mais receber mensagens, obrigado"))
    assert (turn.status, turn.parado_por) == ("parado", "optout")
    m = await one(app, "SELECT opted_out, opted_out_motivo FROM medicos WHERE id = %s",
                  medico["id"])  # fmt: skip
    assert m["opted_out"] and "nao quero mais receber" in m["opted_out_motivo"]
    assert [(f["status"], f["outcome"]) for f in await fila(app)] == [
        ("bloqueada", "BLOCKED_OPTOUT")
    ] * 2
    assert [(s["number"], s["text"]) for s in state.messages] == [
        (PHONE[1:], texts.OPTOUT_CONFIRMATION)
    ]
    # Writing again (even "PARE" again) gets no second confirmation and no reply.
    again = await say(client, app, clock, upsert("PARE"))
    assert again.parado_por == "optout" and len(state.messages) == 1
    later = await say(client, app, clock, upsert("e aquele plantão?"))
    assert later.parado_por == "optout" and later.motivo == "doctor opted out earlier"
    # Anything queued afterwards is blocked too.
    queued = await enqueue(app, NewMessage(texto="Oferta", medico_id=medico["id"], tipo="followup"))
    assert queued.status == "bloqueada"


# --- humans and groups -----------------------------------------------------------------


async def test_a_message_typed_on_the_phone_pauses_julia(
    client: httpx.AsyncClient, app: App, clock: FrozenClock
) -> None:
    await say(client, app, clock, upsert("oi"))
    typed = await say(client, app, clock, upsert("Oi doutor, aqui é a Ana da equipe", fromMe=True))
    assert typed.parado_por == "human_takeover"
    conversa = await one(app, "SELECT controlled_by FROM conversas")
    assert conversa["controlled_by"] == "humano"
    h = await one(app, "SELECT status, trigger, actor FROM handoffs")
    assert h == {"status": "em_atendimento", "trigger": "chip", "actor": "chip"}
    turn = await say(client, app, clock, upsert("obrigado Ana"))
    assert (turn.parado_por, turn.motivo) == ("human_control", "a human controls the conversation")
    saida = await one(app, "SELECT count(*) AS n FROM interacoes WHERE direcao = 'saida'")
    assert saida["n"] == 1


async def test_group_messages_are_stored_and_never_answered(
    client: httpx.AsyncClient, app: App, clock: FrozenClock, sandbox: Any
) -> None:
    state, calls = sandbox
    body = json.loads((FIXTURES / "evolution_messages_upsert_group.json").read_text())
    turn = await say(client, app, clock, body)
    assert turn.parado_por == "group_ingestion"
    assert calls == [] and state.messages == [] and await fila(app) == []
    assert await one(app, "SELECT count(*) AS n FROM medicos") == {"n": 0}


# --- hours, bots, media, long, handoff ---------------------------------------------------


def test_next_opening(settings: Settings) -> None:
    monday_11 = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)  # 11:00 in São Paulo
    assert next_opening(monday_11, settings) is None
    friday_21 = datetime(2026, 1, 10, 0, 0, tzinfo=UTC)  # Friday 21:00 in São Paulo
    assert next_opening(friday_21, settings) == datetime(2026, 1, 12, 11, 0, tzinfo=UTC)


async def test_outside_hours_acknowledges_once_and_schedules_the_reply(
    client: httpx.AsyncClient, app: App, clock: FrozenClock
) -> None:
    clock.set(datetime(2026, 1, 6, 1, 0, tzinfo=UTC))  # Monday 22:00 in São Paulo
    first = await say(client, app, clock, upsert("oi, tem plantão amanhã?"))
    second = await say(client, app, clock, upsert("é para clínica médica"))
    assert (first.status, second.status) == ("agendado", "agendado")
    turno = await one(app, "SELECT responder_apos FROM inbox_turnos ORDER BY id LIMIT 1")
    assert turno["responder_apos"] == datetime(2026, 1, 6, 11, 0, tzinfo=UTC)
    assert [f["texto"] for f in await fila(app)] == [texts.OUTSIDE_HOURS_ACK]
    assert await turns_awaiting_reply(app) == []  # not before the opening
    clock.set(datetime(2026, 1, 6, 11, 0, tzinfo=UTC))
    assert [t["texto"] for t in await turns_awaiting_reply(app)] == [
        "oi, tem plantão amanhã?",
        "é para clínica médica",
    ]


async def test_auto_replies_are_not_answered(
    client: httpx.AsyncClient, app: App, clock: FrozenClock
) -> None:
    turn = await say(client, app, clock, upsert(
        "Olá! Esta é uma mensagem automática. No momento não posso atender."))  # fmt: skip
    assert turn.parado_por == "bot_detection" and await fila(app) == []


async def test_audio_is_stored_and_answered_sensibly(
    client: httpx.AsyncClient, app: App, clock: FrozenClock, settings: Settings
) -> None:
    body = copy.deepcopy(AUDIO)
    body["data"]["key"] = {"remoteJid": f"{PHONE[1:]}@s.whatsapp.net", "fromMe": False,
                           "id": "AUDIO0001"}  # fmt: skip
    body["data"]["message"]["base64"] = base64.b64encode(b"OggS fake opus").decode()
    turn = await say(client, app, clock, body)
    assert (turn.parado_por, turn.motivo) == ("media", "audio Júlia cannot read")
    stored = settings.home / "media" / "evolution" / "2026-01" / "AUDIO0001.ogg"
    assert stored.read_bytes() == b"OggS fake opus"
    assert [f["texto"] for f in await fila(app)] == [texts.MEDIA_UNREADABLE["audio"]]


async def test_media_with_a_caption_goes_on_to_the_agent(
    client: httpx.AsyncClient, app: App, clock: FrozenClock
) -> None:
    body = upsert()
    body["data"]["message"] = {"imageMessage": {"mimetype": "image/jpeg", "caption": "meu CRM"}}
    turn = await say(client, app, clock, body)
    assert turn.status == "aguardando_resposta"
    t = await one(app, "SELECT texto, detalhes FROM inbox_turnos")
    assert t["texto"] == "meu CRM" and "midia" in t["detalhes"]["flags"]


async def test_long_messages_are_trimmed_and_flagged(
    client: httpx.AsyncClient, app: App, clock: FrozenClock
) -> None:
    await say(client, app, clock, upsert("palavra " * 1000))
    t = await one(app, "SELECT texto, detalhes FROM inbox_turnos")
    assert len(t["texto"]) == app.settings.inbox_long_message_chars
    assert "longa" in t["detalhes"]["flags"] and t["detalhes"]["tamanho"] == 8000 - 1


@pytest.mark.parametrize(
    ("text", "processor"),
    [("Quero falar com um atendente", "handoff_keywords"),
     ("Não recebi o pagamento do mês passado", "handoff_trigger"),
     ("Isso é um ABSURDO, três semanas sem resposta", "handoff_sentiment")],
)  # fmt: skip
async def test_handoff_hands_the_conversation_to_a_human(
    client: httpx.AsyncClient, app: App, clock: FrozenClock, text: str, processor: str
) -> None:
    turn = await say(client, app, clock, upsert(text))
    assert turn.parado_por == processor
    assert (await one(app, "SELECT controlled_by FROM conversas"))["controlled_by"] == "humano"
    event = await one(app, "SELECT tipo FROM business_events WHERE tipo = 'handoff'")
    assert event is not None
    # Through the state machine: a handoff row with its trigger, and never silent: without
    # Chatwoot configured nobody could be told, so a critical alert says so.
    h = await one(app, "SELECT status, trigger, summary FROM handoffs")
    assert h["status"] == "pendente" and text in h["summary"]
    assert h["trigger"] == {"handoff_keywords": "keyword", "handoff_trigger": "gatilho",
                            "handoff_sentiment": "sentimento"}[processor]  # fmt: skip
    alert = await one(app, "SELECT severity FROM alerts WHERE kind = 'handoff.not_notified'")
    assert alert["severity"] == "critical"


# --- presence and the processor list ------------------------------------------------------


async def test_presence_marks_read_and_types_through_the_gateway(
    client: httpx.AsyncClient, app: App, clock: FrozenClock, sandbox: Any
) -> None:
    _, calls = sandbox
    body = upsert("oi")
    await say(client, app, clock, body)
    assert calls == [
        ("/chat/markMessageAsRead/caldasIA",
         {"readMessages": [{"id": body["data"]["key"]["id"], "fromMe": False,
                            "remoteJid": f"{PHONE[1:]}@s.whatsapp.net"}]}),
        ("/chat/sendPresence/caldasIA",
         {"number": PHONE[1:], "presence": "composing", "delay": 1000}),
    ]  # fmt: skip


async def test_an_unknown_sender_becomes_a_lead_with_business_events(
    client: httpx.AsyncClient, app: App, clock: FrozenClock
) -> None:
    await say(client, app, clock, upsert("oi"))
    async with app.pool.connection() as conn:
        cur = await conn.execute("SELECT tipo FROM business_events ORDER BY id")
        assert [r["tipo"] for r in await cur.fetchall()] == ["mensagem_recebida", "lead_criado"]


async def test_a_known_sender_keeps_the_conversation_its_time_and_the_chip(
    client: httpx.AsyncClient, app: App, clock: FrozenClock
) -> None:
    first = await say(client, app, clock, upsert("oi"))
    chip = await one(
        app, "INSERT INTO chips (instance, telefone, provider, trust_score, trust_level,"
        " trust_updated_at, created_at, updated_at) VALUES ('caldasIA', '+5511900000001',"
        " 'evolution', 80, 'verde', %s, %s, %s) RETURNING id", *[clock.now()] * 3,
    )  # fmt: skip
    clock.advance(60)
    second = await say(client, app, clock, upsert("tudo bem?"))
    conversas = await one(app, "SELECT count(*) AS n, max(id) AS id, max(last_message_at) AS at,"
                               " max(chip_id) AS chip FROM conversas")  # fmt: skip
    assert conversas["n"] == 1 and conversas["chip"] == chip["id"]
    assert conversas["at"] == clock.now()  # the second turn moved it
    turnos = await one(app, "SELECT array_agg(DISTINCT conversa_id) AS c, array_agg(DISTINCT"
                            " medico_id) AS m FROM inbox_turnos WHERE id = ANY(%s)",
                       [first.turno_id, second.turno_id])  # fmt: skip
    assert turnos["c"] == [conversas["id"]] and len(turnos["m"]) == 1
    events = await one(app, "SELECT array_agg(tipo ORDER BY id) AS t FROM business_events")
    assert events["t"] == ["mensagem_recebida", "lead_criado", "mensagem_recebida"]


def test_processors_run_in_the_issue_order() -> None:
    assert [(p.name, p.priority) for p in default_processors()] == [
        ("group_ingestion", 5), ("parse", 10), ("presence", 15), ("load_entities", 20),
        ("chip_mapping", 21), ("business_events", 22), ("human_takeover", 24),
        ("chatwoot_sync", 25), ("optout", 30), ("outside_hours", 32), ("bot_detection", 35),
        ("media", 40), ("long_message", 45), ("handoff_trigger", 50), ("handoff_keywords", 55),
        ("handoff_sentiment", 57), ("human_control", 60), ("agent", 100),
    ]  # fmt: skip


async def test_media_goes_to_supabase_storage_when_configured(
    client: httpx.AsyncClient, app: App, clock: FrozenClock, settings: Settings
) -> None:
    """The real ``supabase`` client uploads to a sandbox speaking the Storage API."""
    import asyncio
    import threading

    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    uploads: list[tuple[str, bytes, str | None]] = []

    async def upload(request: Request) -> JSONResponse:
        path = request.path_params["path"]
        uploads.append((path, await request.body(), request.headers.get("x-upsert")))
        return JSONResponse({"Key": path, "Id": "00000000-0000-0000-0000-000000000001"})

    storage = Starlette(
        routes=[Route("/storage/v1/object/{path:path}", upload, methods=["POST", "PUT"])]
    )
    server = uvicorn.Server(uvicorn.Config(storage, port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:  # noqa: ASYNC110 (a thread's flag: no event to await)
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        app.settings = settings.model_copy(
            update={
                "media_supabase_url": f"http://127.0.0.1:{port}",
                "media_supabase_key": SecretStr("sb_secret_sandbox0123456789"),
                "media_supabase_bucket": "midia",
            }
        )
        body = copy.deepcopy(AUDIO)
        body["data"]["key"] = {"remoteJid": f"{PHONE[1:]}@s.whatsapp.net", "fromMe": False,
                               "id": "AUDIO0002"}  # fmt: skip
        body["data"]["message"]["base64"] = base64.b64encode(b"OggS fake opus").decode()
        turn = await say(client, app, clock, body)
        assert turn.parado_por == "media"
        [(path, sent, upsert_header)] = uploads  # a multipart form, as Supabase takes it
        assert path == "midia/evolution/2026-01/AUDIO0002.ogg" and upsert_header == "true"
        assert b"\r\n\r\nOggS fake opus\r\n" in sent and b"Content-Type: audio/ogg" in sent
        t = await one(app, "SELECT detalhes FROM inbox_turnos")
        assert list(t["detalhes"]["midia"].values()) == [
            "supabase://midia/evolution/2026-01/AUDIO0002.ogg"
        ]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
