"""Z-API chips for real (issue 16): each with its own instance id and tokens, stored apart
and never shown; failover to them when the evolution breaker is open; all over HTTP to the
sandbox speaking Z-API's send and status endpoints."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from julia.chips import health, pool
from julia.core import audit
from julia.core.app import App
from julia.core.clock import FrozenClock
from julia.core.errors import InvalidInput
from julia.fila import queue
from julia.fila.queue import NewMessage
from julia.outbound import send
from julia.resilience.breaker import breakers
from julia.sandbox.gateway import control as sandbox
from julia.settings import Settings


@pytest.fixture
async def zapp(settings: Settings, clock: FrozenClock, sandbox_gateway: str) -> AsyncIterator[App]:
    configured = settings.model_copy(
        update={"evolution_url": sandbox_gateway, "zapi_url": sandbox_gateway,
                "rate_limits_enabled": False}
    )  # fmt: skip
    sandbox(
        sandbox_gateway,
        "/_sandbox/zapi",
        "POST",
        json={"instance": "ZA1", "token": "tok-a-secret", "client_token": "ct-a-secret"},
    )
    sandbox(sandbox_gateway, "/_sandbox/zapi", "POST",
            json={"instance": "ZB2", "token": "tok-b-secret"})  # fmt: skip
    async with App.open(configured, clock=clock) as opened:
        yield opened


async def _zapi_chips(app: App) -> None:
    await pool.add(app, instance="ZA1", telefone="+5511900000101", provider="zapi",
                   trust_score=85, status="active", zapi_token="tok-a-secret",
                   zapi_client_token="ct-a-secret")  # fmt: skip
    await pool.add(app, instance="ZB2", telefone="+5511900000102", provider="zapi",
                   trust_score=85, status="active", zapi_token="tok-b-secret")  # fmt: skip


async def test_several_zapi_chips_send_each_with_its_own_tokens(zapp: App) -> None:
    await _zapi_chips(zapp)
    msgs = [NewMessage(f"oi {i}", telefone=f"+55119777000{i:02d}") for i in range(4)]
    await queue.enqueue_many(zapp, msgs)
    report = await send.process_batch(zapp, "w1", await queue.claim(zapp, "w1", 10))
    assert report.sent == 4
    seen = sandbox(zapp, "/_sandbox/messages")
    assert {m["instance"] for m in seen} == {"ZA1", "ZB2"}  # both chips, both tokens right
    assert all(m["provider"] == "zapi" for m in seen)
    assert (await health.sync(zapp)).connected == 2  # the status endpoint, per chip token


async def test_a_zapi_chip_needs_its_token_and_never_shows_it(zapp: App, cli: Any) -> None:
    with pytest.raises(InvalidInput, match="--zapi-token"):
        await pool.add(zapp, instance="ZC3", telefone="+5511900000103", provider="zapi")
    await _zapi_chips(zapp)
    shown = json.dumps([vars(c) for c in await pool.list_chips(zapp)], default=str)
    r = await asyncio.to_thread(cli, "chips", "list", "--json")
    assert r.exit_code == 0, r.output
    for text in (r.stdout, shown):
        assert "tok-a-secret" not in text and "ct-a-secret" not in text
    async with zapp.pool.connection() as conn:
        cur = await conn.execute("SELECT detalhes::text AS d FROM audit_log")
        assert all("secret" not in row["d"] for row in await cur.fetchall())


async def test_with_the_evolution_breaker_open_a_message_fails_over_to_a_zapi_chip(
    zapp: App,
) -> None:
    await pool.add(zapp, instance="evo-1", telefone="+5511900000100", trust_score=95,
                   status="active")  # fmt: skip
    await _zapi_chips(zapp)
    await breakers(zapp).get("evolution").force("forced_open", "evolution down", audit.Actor("ana"))
    r = await queue.enqueue(zapp, NewMessage("vaga amanhã?", telefone="+5511977700001"))
    report = await send.process_batch(zapp, "w1", await queue.claim(zapp, "w1", 10))
    assert report.sent == 1
    m = await queue.get(zapp, r.id)
    assert m.status == "enviada" and m.instancia in ("ZA1", "ZB2")
    [seen] = sandbox(zapp, "/_sandbox/messages")
    assert (seen["instance"], seen["provider"]) == (m.instancia, "zapi")


async def test_with_only_evolution_chips_an_open_breaker_still_reschedules(zapp: App) -> None:
    await pool.add(zapp, instance="evo-1", telefone="+5511900000100", trust_score=95,
                   status="active")  # fmt: skip
    await breakers(zapp).get("evolution").force("forced_open", "evolution down", audit.Actor("ana"))
    r = await queue.enqueue(zapp, NewMessage("x", telefone="+5511977700001"))
    await send.process_batch(zapp, "w1", await queue.claim(zapp, "w1", 10))
    m = await queue.get(zapp, r.id)
    assert (m.status, m.outcome, m.tentativas) == ("pendente", "FAILED_CIRCUIT_OPEN", 0)
