"""Keeping the pool healthy: a chip that stops answering is detected by the gateway sync,
demoted by the health monitor, its conversations migrated, a ready chip promoted, and
the pool alert raised once (then again only after 30 minutes)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from julia.chips import health, pool, selection
from julia.core.app import App
from julia.core.clock import FrozenClock
from julia.core.errors import NoChipAvailable
from julia.inbox import parsing, store
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
            "chip_pool_min_active": 3,
            "chip_pool_ready_buffer": 0,
            "chip_pool_warming_buffer": 0,
        }
    )
    async with App.open(configured, clock=clock) as opened:
        yield opened


async def _rows(app: App, sql: str, *args: Any) -> list[dict[str, Any]]:
    async with app.pool.connection() as conn:
        cur = await conn.execute(sql, args)
        return list(await cur.fetchall())


async def _conversa(app: App, tel: str, chip_id: int, last_at: Any) -> int:
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO medicos (telefone, nome) VALUES (%s, 'Dr. Teste') RETURNING id", (tel,)
        )
        medico = (await cur.fetchone())["id"]  # type: ignore[index]
        cur = await conn.execute(
            "INSERT INTO conversas (medico_id, chip_id, last_message_at) VALUES (%s, %s, %s)"
            " RETURNING id",
            (medico, chip_id, last_at),
        )
        return int((await cur.fetchone())["id"])  # type: ignore[index]


async def test_a_silent_chip_is_synced_demoted_migrated_refilled_and_alerted_once(
    pool_app: App, clock: FrozenClock
) -> None:
    app = pool_app
    a, b, c = [
        await pool.add(app, instance=f"chip-{n}", telefone=f"+551190000000{i}", trust_score=85,
                       status="active")
        for i, n in enumerate("abc")
    ]  # fmt: skip
    spare = await pool.add(app, instance="chip-spare", telefone="+5511900000009", trust_score=86,
                           status="ready")  # fmt: skip
    now = clock.now()
    recent = await _conversa(app, "+5511977700001", a.id, now - timedelta(minutes=20))
    stale = await _conversa(app, "+5511977700002", a.id, now - timedelta(days=2))
    first = await health.sync(app)
    assert (first.checked, first.connected, first.alerted) == (4, 4, False)
    assert (await health.pool_check(app)).alerts_raised == 0  # a healthy pool is quiet

    # chip-a stops answering: the next sync sees it disconnected, at once for selection
    sandbox(app, "/_sandbox/faults", "POST", json={"instance": "chip-a", "disconnected": True})
    clock.advance(minutes=2)
    synced = await health.sync(app)
    assert synced.disconnected == [a.id] and not synced.alerted  # 1 of 4: below 30 %
    got = await pool.get(app, a.id)
    assert got.connected is False and got.desconectado_desde == clock.now()
    sel = await selection.select(app, tipo="prospeccao", telefone="+5511977700001")
    assert sel.chip.id != a.id
    assert {x["id"]: x["why"] for x in sel.candidates}[a.id].startswith("disconnected")

    # not demoted before 30 minutes disconnected
    assert (await health.monitor(app)).demoted == []
    clock.advance(minutes=29)
    assert (await health.monitor(app)).demoted == []  # 29 minutes: not yet
    clock.advance(minutes=2)
    await health.sync(app)
    assert (await pool.get(app, a.id)).desconectado_desde == now + timedelta(minutes=2)
    report = await health.monitor(app)
    assert [d["chip_id"] for d in report.demoted] == [a.id]
    assert "disconnected for 31 min" in report.demoted[0]["motivo"]
    assert report.promoted == [spare.id]  # the pool refilled to its minimum
    assert (await pool.get(app, a.id)).status == "degraded"
    assert (await pool.get(app, spare.id)).status == "active"
    moves = await _rows(app, "SELECT conversa_id, from_chip, to_chip, continuacao_id, ator"
                             " FROM chip_migrations ORDER BY conversa_id")  # fmt: skip
    assert [m["conversa_id"] for m in moves] == [recent, stale]
    assert all(m["from_chip"] == a.id and m["to_chip"] in (b.id, c.id, spare.id) for m in moves)
    assert {m["ator"] for m in moves} == {"automation"}
    assert moves[0]["continuacao_id"] is not None and moves[1]["continuacao_id"] is None
    conversas = await _rows(app, "SELECT chip_id FROM conversas WHERE chip_id = %s", a.id)
    assert conversas == []
    transitions = await _rows(app, "SELECT de, para, motivo, ator FROM chip_transitions"
                                   " WHERE chip_id = %s ORDER BY id", a.id)  # fmt: skip
    assert transitions[-1]["para"] == "degraded" and transitions[-1]["ator"] == "automation"
    assert "disconnected" in transitions[-1]["motivo"]
    demoted_alerts = await _rows(app, "SELECT kind FROM alerts WHERE kind = 'chip.demoted'")
    assert len(demoted_alerts) == 1
    # running the monitor again changes nothing and alerts nothing new
    again = await health.monitor(app)
    assert again.demoted == [] and again.promoted == []

    # now chip-b goes silent too and there is no spare left: the pool is short
    sandbox(app, "/_sandbox/faults", "POST", json={"instance": "chip-b", "disconnected": True})
    await health.sync(app)
    clock.advance(minutes=31)
    await health.sync(app)
    await health.monitor(app)
    checks = [await health.pool_check(app) for _ in range(3)]
    assert checks[0].active == 2 and checks[0].alerts_raised == 1
    assert [ch.alerts_raised for ch in checks[1:]] == [0, 0]  # the same alert once
    pool_alerts = await _rows(app, "SELECT kind, severity FROM alerts"
                                   " WHERE kind = 'chip.pool_active_low'")  # fmt: skip
    assert pool_alerts == [{"kind": "chip.pool_active_low", "severity": "critical"}]
    clock.advance(minutes=31)
    assert (await health.pool_check(app)).alerts_raised == 1  # still short 30 min later


async def test_more_than_30_percent_disconnected_alerts_once(pool_app: App) -> None:
    app = pool_app
    for i, n in enumerate("abc"):
        await pool.add(app, instance=f"chip-{n}", telefone=f"+551190000000{i}", status="active")
    sandbox(app, "/_sandbox/faults", "POST", json={"instance": "chip-a", "disconnected": True})
    sandbox(app, "/_sandbox/faults", "POST", json={"instance": "chip-b", "disconnected": True})
    first = await health.sync(app)
    second = await health.sync(app)
    assert len(first.disconnected) == 2 and first.alerted and not second.alerted
    rows = await _rows(app, "SELECT kind FROM alerts WHERE kind = 'chip.pool_disconnected'")
    assert len(rows) == 1


async def test_a_connection_update_webhook_is_honoured_at_once(
    pool_app: App, clock: FrozenClock
) -> None:
    app = pool_app
    chip = await pool.add(app, instance="chip-a", telefone="+5511900000001", status="active",
                          trust_score=85)  # fmt: skip
    await health.sync(app)
    clock.advance(seconds=30)
    body = {"event": "connection.update", "instance": "chip-a",
            "data": {"instance": "chip-a", "state": "close", "statusReason": 401}}  # fmt: skip
    await store.accept(app, parsing.parse_evolution(body), json.dumps(body))
    with pytest.raises(NoChipAvailable):  # no sync needed: the selection reads the event
        await selection.select(app, tipo="resposta", telefone="+5511977700001")
    (listed,) = await pool.list_chips(app)  # and so does julia chips list
    assert (listed.connected, listed.connection_state) == (False, "close")
    await health.monitor(app)  # the monitor applies stored events to the chip row
    got = await pool.get(app, chip.id)
    assert got.connected is False and got.connection_state == "close"
    assert got.desconectado_desde == clock.now()


async def test_a_gateway_that_is_down_does_not_demote_the_pool(
    pool_app: App, clock: FrozenClock
) -> None:
    """The Evolution server failing says nothing about the chips: they keep their state
    (no mass demotion), and the outage is its own alert."""
    app = pool_app
    for i, n in enumerate("abc"):
        await pool.add(app, instance=f"chip-{n}", telefone=f"+551190000000{i}", status="active",
                       trust_score=85)  # fmt: skip
    await health.sync(app)
    sandbox(app, "/_sandbox/faults", "POST", json={"status": 500})
    report = await health.sync(app)
    assert len(report.unreachable) == 3 and report.checked == 0 and not report.alerted
    clock.advance(minutes=45)
    await health.sync(app)
    assert (await health.monitor(app)).demoted == []
    assert {c.connected for c in await pool.list_chips(app)} == {True}
    rows = await _rows(app, "SELECT kind FROM alerts WHERE kind = 'chip.gateway_unreachable'")
    assert len(rows) == 2  # once, then again after the 30-minute cooldown


async def test_pool_check_without_any_chip_is_single_instance_mode(app: App) -> None:
    """No chip registered: the single instance from settings sends; no pool alerts."""
    report = await health.pool_check(app)
    assert (report.active, report.problems, report.alerts_raised) == (0, [], 0)
    async with app.pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) AS n FROM alerts WHERE kind LIKE 'chip.pool%%'")
        assert await cur.fetchone() == {"n": 0}
