"""The incident, replayed end to end over real HTTP with the sandbox gateway.

Four chips with trust 85, 75, 70 and 70. The first is restricted by WhatsApp (403)
in the middle of a bulk send of prospecting messages. Before: the others were never
used (fixed threshold 80), no retry on another chip, a global breaker. Now: the
chip goes into cooldown and its own breaker opens, the send continues on the others
in emergency mode, no message is lost or sent twice, every decision is recorded.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from julia.chips import health, pool, selection
from julia.core.app import App
from julia.core.clock import FrozenClock
from julia.fila import queue
from julia.fila.queue import NewMessage
from julia.outbound import send
from julia.resilience import ratelimit
from julia.sandbox.gateway import control as sandbox
from julia.settings import Settings

TRUSTS = {"chip-85": 85, "chip-75": 75, "chip-70a": 70, "chip-70b": 70}


@pytest.fixture
async def pool_app(
    settings: Settings, clock: FrozenClock, sandbox_gateway: str
) -> AsyncIterator[App]:
    """The sandbox as the gateway, with rate limits ON (slots really reserved) but wide
    enough for a bulk send in frozen time."""
    configured = settings.model_copy(
        update={
            "evolution_url": sandbox_gateway,
            "rate_limit_interval_min_s": 0,
            "rate_limit_interval_max_s": 0,
            "rate_limit_chip_hourly": 1000,
            "rate_limit_chip_daily": 1000,
            "rate_limit_chip_burst": 1000,
        }
    )
    async with App.open(configured, clock=clock) as opened:
        yield opened


async def _pool(app: App) -> dict[str, pool.Chip]:
    chips = {}
    for i, (name, trust) in enumerate(TRUSTS.items()):
        chips[name] = await pool.add(
            app, instance=name, telefone=f"+55119000000{i:02d}", trust_score=trust,
            status="active",
        )  # fmt: skip
    return chips


async def _rows(app: App, sql: str, *args: Any) -> list[dict[str, Any]]:
    async with app.pool.connection() as conn:
        cur = await conn.execute(sql, args)
        return list(await cur.fetchall())


async def run_once(app: App, worker: str = "w1", limit: int = 10) -> send.BatchReport:
    batch = await queue.claim(app, worker, limit)
    return await send.process_batch(app, worker, batch)


async def test_incident_403_mid_bulk_send_continues_on_the_others(
    pool_app: App, clock: FrozenClock
) -> None:
    app = pool_app
    chips = await _pool(app)
    first = chips["chip-85"]
    synced = await health.sync(app)  # the gateway sync runs: every instance is connected
    assert synced.connected == 4 and not synced.disconnected

    phones = [f"+55119888{i:05d}" for i in range(40)]
    ids = (
        await queue.enqueue_many(
            app, [NewMessage(f"Oi! Vaga de plantão {i}", telefone=p, tipo="prospeccao")
                  for i, p in enumerate(phones)],
        )
    ).ids  # fmt: skip

    # the first batch: only chip-85 may prospect (trust ≥ 80)
    report = await run_once(app)
    assert report.sent == 10
    seen = sandbox(app, "/_sandbox/messages")
    assert {m["instance"] for m in seen} == {"chip-85"}

    # WhatsApp restricts chip-85 in the middle of the bulk send
    sandbox(app, "/_sandbox/faults", "POST", json={"instance": "chip-85", "status": 403})
    for _ in range(10):
        clock.advance(seconds=1)
        if (await run_once(app)).claimed == 0:
            break

    # every message sent, exactly once, none lost
    msgs = [await queue.get(app, i) for i in ids]
    assert {(m.status, m.outcome) for m in msgs} == {("enviada", "SENT")}
    seen = sandbox(app, "/_sandbox/messages")
    assert len(seen) == 40
    assert sorted(m["number"] for m in seen) == sorted(p.lstrip("+") for p in phones)
    by_instance = Counter(m["instance"] for m in seen)
    assert by_instance["chip-85"] == 10
    assert sum(by_instance[n] for n in ("chip-75", "chip-70a", "chip-70b")) == 30
    assert all(by_instance[n] >= 5 for n in ("chip-75", "chip-70a", "chip-70b"))  # spread
    # each message row names the chip that really sent it
    sent_by = {m["id"]: m["instance"] for m in seen}
    for m in msgs:
        assert m.instancia == sent_by[m.provider_message_id]
        assert m.chip_id == chips[m.instancia].id

    # chip-85: cooldown of 60 min, its own breaker open; the others untouched
    listed = {c.instance: c for c in await pool.list_chips(app)}
    c85 = listed["chip-85"]
    assert c85.cooldown_until is not None and c85.in_cooldown(clock.now())
    assert (c85.cooldown_until - clock.now()).total_seconds() > 55 * 60
    assert c85.circuit == "open" and c85.status == "active"
    assert {listed[n].circuit for n in ("chip-75", "chip-70a", "chip-70b")} == {"closed"}
    moves = await _rows(app, "SELECT name, from_state, to_state FROM circuit_transitions")
    assert moves == [{"name": f"chip:{first.id}", "from_state": "closed", "to_state": "open"}]
    # the urgent recomputation after the 403 replaced the seeded 85 with real data
    assert c85.trust_source == "computed" and c85.trust_score < 80
    errors = await _rows(app, "SELECT code, count(*) AS n FROM chip_eventos WHERE chip_id = %s"
                              " AND kind = 'send_error' GROUP BY code", first.id)  # fmt: skip
    assert [e["code"] for e in errors] == ["GATEWAY_403"] and errors[0]["n"] >= 3

    # every decision is in the selection log
    log = await _rows(app, "SELECT * FROM chip_selection_log ORDER BY id")
    by_msg: dict[int, list[dict[str, Any]]] = {}
    for row in log:
        by_msg.setdefault(row["mensagem_id"], []).append(row)
    assert set(by_msg) == set(ids)
    for mid, rows in by_msg.items():
        assert rows[-1]["resultado"] == "sent", mid
        assert all(r["chosen_chip"] is not None for r in rows)
    failed_over = [rows for rows in by_msg.values() if len(rows) > 1]
    assert failed_over, "some messages were retried at once on another chip"
    for rows in failed_over:
        assert rows[0]["chosen_chip"] == first.id and rows[0]["resultado"] == "GATEWAY_403"
        assert rows[1]["tentativa"] == 2 and rows[1]["excluded"] == [first.id]
        assert rows[1]["emergency"] is True and rows[1]["threshold"] == 60
    normal = [r for r in log if not r["emergency"]]
    assert {r["chosen_chip"] for r in normal} == {first.id}
    assert {r["threshold"] for r in normal} == {80}
    later = [r for r in log if r["emergency"] and r["tentativa"] == 1]
    assert later, "after the 403 new selections run in emergency mode"
    for r in later:
        why = {c["instance"]: c["why"] for c in r["candidates"]}
        assert r["chosen_chip"] != first.id
        assert why["chip-85"].startswith(("cooldown", "circuit", "trust")), why
    assert await _rows(app, "SELECT count(*) AS n FROM audit_log WHERE acao = 'chips.emergency'")
    cooldowns = await _rows(app, "SELECT acao, alvo, operador FROM audit_log"
                                 " WHERE acao = 'chips.cooldown'")  # fmt: skip
    assert cooldowns and {c["alvo"] for c in cooldowns} == {f"chip:{first.id}"}
    assert {c["operador"] for c in cooldowns} == {"automation"}


async def test_all_chips_failing_tries_three_then_failed_all_chips(pool_app: App) -> None:
    app = pool_app
    chips = await _pool(app)
    sandbox(app, "/_sandbox/faults", "POST", json={"status": 429})  # every instance
    (mid,) = (await queue.enqueue_many(app, [NewMessage("oi", telefone="+5511988800001",
                                                        tipo="resposta")])).ids  # fmt: skip
    report = await run_once(app)
    assert report.sent == 0 and report.claimed == 1
    m = await queue.get(app, mid)
    assert (m.status, m.outcome, m.motivo) == ("pendente", "FAILED_ALL_CHIPS", "FAILED_ALL_CHIPS")
    assert m.tentativas == 1 and m.proxima_tentativa_em > app.clock.now()  # the queue retries
    assert sandbox(app, "/_sandbox/calls")["sendText"] == 3  # three different chips, no more
    log = await _rows(app, "SELECT chosen_chip, resultado, tentativa FROM chip_selection_log"
                           " WHERE mensagem_id = %s ORDER BY id", mid)  # fmt: skip
    tried = [r["chosen_chip"] for r in log]
    assert len(set(tried)) == 3 and [r["tentativa"] for r in log] == [1, 2, 3]
    assert {r["resultado"] for r in log} == {"GATEWAY_429"}
    # each tried chip cools down 5 minutes; the fourth was never touched
    listed = {c.id: c for c in await pool.list_chips(app)}
    for chip_id in tried:
        assert (listed[chip_id].cooldown_until - app.clock.now()).total_seconds() == 300
    (untouched,) = set(c.id for c in chips.values()) - set(tried)
    assert listed[untouched].cooldown_until is None
    # the slots reserved on the failed chips were given back
    for chip_id in tried:
        st = await ratelimit.status(app, chip_id=chip_id)
        assert all(u.used == 0 for u in st.usage), st


async def test_no_chip_may_send_reschedules_without_spending_an_attempt(
    pool_app: App, clock: FrozenClock
) -> None:
    app = pool_app
    await pool.add(app, instance="only", telefone="+5511900000001", trust_score=50,
                   status="active")  # fmt: skip
    (mid,) = (await queue.enqueue_many(app, [NewMessage("oi", telefone="+5511988800001",
                                                        tipo="prospeccao")])).ids  # fmt: skip
    report = await run_once(app)
    assert report.sent == 0
    m = await queue.get(app, mid)
    assert (m.status, m.outcome, m.tentativas) == ("pendente", "RESCHEDULED_RATE_LIMIT", 0)
    assert "no_chip_available" in (m.motivo or "")
    (row,) = await selection.selection_log(app, mensagem_id=mid)
    assert row["chosen_chip"] is None and row["emergency"] is True
    assert "trust 50 < 60" in row["candidates"][0]["why"]
    assert sandbox(app, "/_sandbox/messages") == []


async def test_a_number_not_on_whatsapp_is_not_the_chips_fault(pool_app: App) -> None:
    app = pool_app
    await _pool(app)
    sandbox(app, "/_sandbox/numbers", "POST", json={"not_on_whatsapp": ["5511988800001"]})
    (mid,) = (await queue.enqueue_many(app, [NewMessage("oi", telefone="+5511988800001",
                                                        tipo="resposta")])).ids  # fmt: skip
    await run_once(app)
    m = await queue.get(app, mid)
    assert (m.status, m.outcome) == ("dlq", "FAILED_INVALID_NUMBER")
    assert sandbox(app, "/_sandbox/calls")["sendText"] == 1  # no other chip tried
    assert await _rows(app, "SELECT * FROM chip_eventos") == []  # no error, no cooldown
    assert all(c.cooldown_until is None for c in await pool.list_chips(app))


async def test_a_send_that_may_have_gone_out_is_reconciled_on_its_chip_not_resent(
    settings: Settings, clock: FrozenClock, sandbox_gateway: str
) -> None:
    """A timeout after the gateway accepted: never retried on another chip (it would be a
    duplicate); the queue holds it as incerta and reconciles it against the history of
    the chip's own instance."""
    configured = settings.model_copy(
        update={
            "evolution_url": sandbox_gateway,
            "rate_limits_enabled": False,
            "http_read_timeout_s": 0.3,
        }
    )
    async with App.open(configured, clock=clock) as app:
        await _pool(app)
        sandbox(app, "/_sandbox/faults", "POST", json={"instance": "chip-85", "latency_ms": 800})
        (mid,) = (await queue.enqueue_many(app, [NewMessage("oi", telefone="+5511988800001",
                                                            tipo="prospeccao")])).ids  # fmt: skip
        await run_once(app)
        m = await queue.get(app, mid)
        assert (m.status, m.outcome, m.instancia) == ("incerta", "OUTCOME_UNKNOWN", "chip-85")
        await asyncio.sleep(1)  # the sandbox finishes the slow send it had accepted
        sandbox(app, "/_sandbox/faults", "DELETE")
        result = await send.reconcile(app, min_age_s=0)
        assert (result.sent, result.requeued) == (1, 0)
        m = await queue.get(app, mid)
        assert m.status == "enviada"
        seen = sandbox(app, "/_sandbox/messages")
        assert [(x["instance"], x["number"]) for x in seen] == [("chip-85", "5511988800001")]
