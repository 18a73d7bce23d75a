"""One trace id from the webhook to the send: the shim starts it, the inbox row keeps
it, the turn and the reply it queues go on under it, and the worker sends under it."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from shim.app import create_app

from julia.core import logs
from julia.core.app import App
from julia.core.clock import FrozenClock
from julia.fila import queue
from julia.inbox import consumer
from julia.inbox.processors import texts
from julia.outbound import send

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TEXT = json.loads((FIXTURES / "evolution_messages_upsert_text.json").read_text())


def upsert(text: str, msg_id: str, number: str = "5511987654321") -> dict[str, Any]:
    body = copy.deepcopy(TEXT)
    body["data"]["key"] = {"remoteJid": f"{number}@s.whatsapp.net", "fromMe": False, "id": msg_id}
    body["data"]["message"] = {"conversation": text}
    return body


async def column(app: App, table: str, where: str = "true") -> list[Any]:
    async with app.pool.connection() as conn:
        cur = await conn.execute(f"SELECT trace_id FROM {table} WHERE {where} ORDER BY id")
        return [r["trace_id"] for r in await cur.fetchall()]


@pytest.fixture
def json_logs(capsys: pytest.CaptureFixture[str]) -> Any:
    """Every JSON log line written so far in this test, parsed."""
    logs.configure("INFO", "json")
    capsys.readouterr()

    def read() -> list[dict[str, Any]]:
        lines = capsys.readouterr().err.splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    return read


async def test_one_trace_id_from_webhook_to_turn_to_send(
    sandbox_app: App, clock: FrozenClock, json_logs: Any
) -> None:
    clock.set(datetime(2026, 1, 6, 1, 0, tzinfo=UTC))  # 22:00 in São Paulo: an ack is queued
    transport = httpx.ASGITransport(app=create_app(julia=sandbox_app))
    async with httpx.AsyncClient(transport=transport, base_url="http://shim") as shim:
        r = await shim.post("/webhooks/evolution", json=upsert("oi, tem plantão?", "TR1"))
        other = await shim.post("/webhooks/evolution", json=upsert("oi", "TR2", "5511911112222"))
    assert r.status_code == 200 and r.json()["status"] == "accepted"
    trace = r.headers["x-trace-id"]
    assert len(trace) == 16 and other.headers["x-trace-id"] != trace  # one per request
    assert await column(sandbox_app, "mensagens_recebidas", "provider_message_id = 'TR1'") == [
        trace
    ]

    clock.advance(5)
    turns = [await consumer.step(sandbox_app, "w1"), await consumer.step(sandbox_app, "w1")]
    assert {t.status for t in turns if t} == {"agendado"}
    ours = next(t for t in turns if t and t.conversa_key == "+5511987654321")
    assert await column(sandbox_app, "inbox_turnos", f"id = {ours.turno_id}") == [trace]
    assert logs.trace_id_var.get() is None  # the turn's trace did not leak out of it

    batch = await queue.claim(sandbox_app, "w1", 10)
    reply = next(m for m in batch if m.trace_id == trace)
    assert reply.texto == texts.OUTSIDE_HOURS_ACK and reply.tipo == "resposta"
    assert (await send.process_batch(sandbox_app, "w1", batch)).sent == 2

    lines = [line for line in json_logs() if line.get("trace_id") == trace]
    events = [line["event"] for line in lines]
    assert "inbox.turn" in events and "fila.enqueued" in events, events
    assert events[0] == "webhook.accepted"  # the trace starts at the shim, in its logs
    assert lines[0]["provider"] == "evolution" and lines[0]["stored"]
    sent = [line for line in lines if line["event"] == "fila.sent"]
    assert [line["id"] for line in sent] == [reply.id]  # the other doctor's send is not ours
    assert sent[0]["telefone"] == "5511...4321"  # masked, never the full number


async def test_a_burst_from_several_webhooks_keeps_the_first_trace_and_logs_the_others(
    app: App, client: httpx.AsyncClient, clock: FrozenClock, json_logs: Any
) -> None:
    first = await client.post("/webhooks/evolution", json=upsert("oi", "B1"))
    second = await client.post("/webhooks/evolution", json=upsert("tudo bem?", "B2"))
    traces = [first.headers["x-trace-id"], second.headers["x-trace-id"]]
    clock.advance(5)
    turn = await consumer.step(app, "w1")
    assert turn is not None and len(turn.mensagens) == 2
    assert await column(app, "inbox_turnos") == [traces[0]]
    burst = [line for line in json_logs() if line["event"] == "inbox.turn_traces"]
    assert burst and burst[0]["traces"] == traces and burst[0]["trace_id"] == traces[0]
