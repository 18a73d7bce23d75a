"""Trust scores move with real sends, replies and acks, factor by factor.

Sends go through the queue and the sandbox gateway over HTTP; replies and acks are
Evolution webhook bodies stored by the real inbox code (parse + accept).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from julia.chips import pool, scoring, selection
from julia.core.app import App
from julia.core.clock import FrozenClock
from julia.fila import queue
from julia.fila.queue import NewMessage
from julia.inbox import parsing, store
from julia.outbound import send
from julia.sandbox.gateway import control as sandbox
from julia.settings import Settings


@pytest.fixture
async def pool_app(
    settings: Settings, clock: FrozenClock, sandbox_gateway: str
) -> AsyncIterator[App]:
    configured = settings.model_copy(
        update={
            "evolution_url": sandbox_gateway,
            "rate_limits_enabled": False,
            "chip_trust_min_sends": 5,
        }
    )
    async with App.open(configured, clock=clock) as opened:
        yield opened


async def webhook(app: App, body: dict[str, Any]) -> None:
    """What the shim does after authentication: parse, then store in the inbox."""
    await store.accept(app, parsing.parse_evolution(body), json.dumps(body))


def upsert(instance: str, phone: str, msg_id: str, text: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = (
        {"conversation": text}
        if text is not None
        else {"imageMessage": {"url": "https://mmg.whatsapp.net/x.enc", "mimetype": "image/jpeg"}}
    )
    return {
        "event": "messages.upsert",
        "instance": instance,
        "data": {
            "key": {
                "remoteJid": f"{phone.lstrip('+')}@s.whatsapp.net",
                "fromMe": False,
                "id": msg_id,
            },
            "pushName": "Dra. Teste",
            "message": message,
            "messageType": "conversation" if text is not None else "imageMessage",
            "messageTimestamp": 1767614400,
        },
    }


def ack(instance: str, provider_id: str, status: str) -> dict[str, Any]:
    return {
        "event": "messages.update",
        "instance": instance,
        "data": {"keyId": provider_id, "fromMe": True, "status": status},
    }


def factors(r: scoring.Recalculated) -> dict[str, float]:
    return {f.name: f.value for f in r.score.factors}


async def test_trust_moves_with_sends_replies_and_acks(pool_app: App, clock: FrozenClock) -> None:
    app = pool_app
    chip = await pool.add(app, instance="chip-a", telefone="+5511900000001", status="active")
    empty = await scoring.recalculate(app, chip.id)
    f0 = factors(empty)
    assert (f0["delivery"], f0["response"], f0["bidirectional"], f0["media"]) == (0, 0, 0, 0)
    assert empty.after < 60

    # 1. real sends: ten replies to ten doctors through the queue and the sandbox
    phones = [f"+55119777000{i:02d}" for i in range(10)]
    await queue.enqueue_many(
        app, [NewMessage(f"Oi {i}", telefone=p, tipo="resposta") for i, p in enumerate(phones)]
    )
    report = await send.process_batch(app, "w1", await queue.claim(app, "w1", 100))
    assert report.sent == 10
    sent = await scoring.recalculate(app, chip.id)
    assert sent.inputs.sent == 10 and sent.inputs.contacted == 10
    assert factors(sent)["delivery"] == 0  # sent is not delivered: no ack yet
    assert factors(sent)["media"] == pytest.approx(1 / 3, abs=1e-3)  # text only

    # 2. acks from messages.update: 8 delivered (3 of them read, counted once), 1 error
    seen = sandbox(app, "/_sandbox/messages")
    ids = [m["id"] for m in seen]
    for pid in ids[:8]:
        await webhook(app, ack("chip-a", pid, "DELIVERY_ACK"))
    for pid in ids[:3]:
        await webhook(app, ack("chip-a", pid, "READ"))
    await webhook(app, ack("chip-a", ids[9], "ERROR"))
    acked = await scoring.recalculate(app, chip.id)
    assert acked.inputs.delivered == 8 and acked.inputs.blocks == 1
    assert factors(acked)["delivery"] == pytest.approx(0.8)
    assert factors(acked)["blocks"] < 1

    # 3. replies: five doctors write back (one twice: one conversation), one sends a photo
    for i in range(5):
        await webhook(app, upsert("chip-a", phones[i], f"IN{i}", text="tenho interesse"))
    await webhook(app, upsert("chip-a", phones[0], "IN0b", text="qual o valor?"))
    await webhook(app, upsert("chip-a", phones[1], "IN1b"))  # an image
    await webhook(app, upsert("chip-b", phones[2], "OTHER", text="outro chip"))  # not ours
    replied = await scoring.recalculate(app, chip.id)
    assert replied.inputs.replied == 5 and replied.inputs.bidirectional == 5
    assert replied.inputs.media_types == 2  # texto and imagem
    f = factors(replied)
    assert f["response"] == pytest.approx(0.5)
    assert f["bidirectional"] == pytest.approx(
        5 / app.settings.chip_trust_bidirectional_full, abs=1e-3
    )

    scores = [empty.after, sent.after, acked.after, replied.after]
    assert scores == sorted(scores) and replied.after > empty.after + 20, scores
    stored = await pool.get(app, chip.id)
    assert stored.trust_score == replied.after and stored.trust_factors["delivery"]["value"] == 0.8
    history = await _rows(app, "SELECT score FROM chip_trust_historico ORDER BY id")
    assert [h["score"] for h in history] == scores

    # 4. a doctor who replied pulls the next message to this chip (affinity)
    other = await pool.add(app, instance="chip-b", telefone="+5511900000002", status="active",
                           trust_score=90)  # fmt: skip
    sel = await selection.select(app, tipo="resposta", telefone=phones[0])
    assert sel.chip.id == chip.id and sel.motivo.startswith("affinity")
    sel = await selection.select(app, tipo="resposta", telefone="+5511977700099")
    assert sel.chip.id == other.id  # no history with anyone: the least used

    # 5. a window later, the evidence is gone again: data, not memory, makes the score
    clock.advance(days=8)
    later = await scoring.recalculate(app, chip.id)
    assert later.inputs.sent == 0 and factors(later)["delivery"] == 0
    assert later.after < replied.after


async def test_errors_lower_the_score_and_a_fall_to_vermelho_alerts_once(
    pool_app: App,
) -> None:
    app = pool_app
    chip = await pool.add(app, instance="chip-a", telefone="+5511900000001", status="active",
                          trust_score=70)  # fmt: skip
    sandbox(app, "/_sandbox/faults", "POST", json={"instance": "chip-a", "status": 500})
    await queue.enqueue_many(
        app, [NewMessage("oi", telefone=f"+55119777000{i:02d}", tipo="resposta") for i in range(6)]
    )
    await send.process_batch(app, "w1", await queue.claim(app, "w1", 100))
    r = await scoring.recalculate(app, chip.id)
    assert r.inputs.errors_24h >= 3 and factors(r)["errors"] < 1
    assert (r.before, r.level_before) == (70, "amarelo") and r.level == "vermelho"
    assert r.alerted
    again = await scoring.recalculate(app, chip.id)
    assert again.level == "vermelho" and not again.alerted
    alerts = await _rows(app, "SELECT kind, details FROM alerts WHERE kind = 'chip.trust_low'")
    assert len(alerts) == 1 and alerts[0]["details"]["chip_id"] == chip.id


async def _rows(app: App, sql: str, *args: Any) -> list[dict[str, Any]]:
    async with app.pool.connection() as conn:
        cur = await conn.execute(sql, args)
        return list(await cur.fetchall())
