"""The send pipeline over real HTTP to the sandbox gateway: guardrails, failures, DLQ, replay."""

from __future__ import annotations

import asyncio
import random
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from julia.chips import pool
from julia.core import audit
from julia.core.app import App
from julia.core.clock import FrozenClock
from julia.core.errors import Conflict
from julia.domain import medicos
from julia.fila import queue
from julia.fila.queue import NewMessage
from julia.outbound import send
from julia.outbound.send import SendOutcome
from julia.resilience import breaker
from julia.sandbox.gateway import control as sandbox

PHONE = "+5511999990001"


class MaxRng(random.Random):
    """Full jitter at its ceiling, so the backoff's growth is visible exactly."""

    def uniform(self, a: float, b: float) -> float:
        return b


async def run_once(app: App, worker: str = "w1", **kw: Any) -> send.BatchReport:
    batch = await queue.claim(app, worker, 100)
    return await send.process_batch(app, worker, batch, **kw)


async def test_messages_are_sent_once_and_recorded_with_the_provider_id(sandbox_app: App) -> None:
    ids = (
        await queue.enqueue_many(
            sandbox_app, [NewMessage(f"olá {i}", telefone=f"+551199999000{i}") for i in range(3)]
        )
    ).ids
    report = await run_once(sandbox_app)
    assert (report.claimed, report.sent) == (3, 3)
    seen = sandbox(sandbox_app, "/_sandbox/messages")
    assert sorted(m["text"] for m in seen) == ["olá 0", "olá 1", "olá 2"]
    assert {m["instance"] for m in seen} == {"julia"}
    by_text = {m["text"]: m for m in seen}
    for i, mid in enumerate(ids):
        m = await queue.get(sandbox_app, mid)
        assert m.status == "enviada" and m.outcome == "SENT"
        assert m.provider_message_id == by_text[f"olá {i}"]["id"]
        assert by_text[f"olá {i}"]["number"] == f"551199999000{i}"
        assert m.instancia == "julia" and m.send_started_at is not None
    assert await run_once(sandbox_app) == send.BatchReport()


async def test_a_doctor_who_opts_out_after_queueing_is_never_messaged(sandbox_app: App) -> None:
    async with sandbox_app.pool.connection() as conn:
        await conn.execute("INSERT INTO medicos (telefone, nome) VALUES (%s, 'Dr. X')", (PHONE,))
    queued = await queue.enqueue(sandbox_app, NewMessage("vaga amanhã?", telefone=PHONE))
    claimed = await queue.claim(sandbox_app, "w1", 10)  # already claimed by a worker...
    await medicos.optout(sandbox_app, PHONE, motivo="PARE")  # ...when the doctor says stop
    report = await send.process_batch(sandbox_app, "w1", claimed)
    assert report.blocked == 1 and report.sent == 0
    m = await queue.get(sandbox_app, queued.id)
    assert (m.status, m.outcome) == ("bloqueada", "BLOCKED_OPTOUT")
    assert m.send_started_at is None
    assert sandbox(sandbox_app, "/_sandbox/messages") == []
    assert sandbox(sandbox_app, "/_sandbox/calls").get("sendText") is None


async def test_500_on_every_call_backs_off_then_dead_letters_then_replay_sends_once(
    sandbox_app: App, clock: FrozenClock, env: dict[str, str]
) -> None:
    clock.set(datetime.now(UTC))  # the CLI below runs on the real clock
    sandbox(sandbox_app, "/_sandbox/faults", "POST", json={"status": 500})
    r = await queue.enqueue(sandbox_app, NewMessage("oi", telefone=PHONE))
    delays = []
    for attempt in range(1, 6):
        report = await run_once(sandbox_app, rng=MaxRng())
        assert report.claimed == 1, f"attempt {attempt} was not due"
        m = await queue.get(sandbox_app, r.id)
        assert m.tentativas == attempt and "500" in (m.ultimo_erro or "")
        if attempt < 5:
            assert (m.status, m.outcome, m.motivo) == ("pendente", "RETRY", "GATEWAY_5XX")
            delays.append((m.proxima_tentativa_em - clock.now()).total_seconds())
            assert await queue.claim(sandbox_app, "early", 1) == []  # not before its time
            clock.set(m.proxima_tentativa_em)
    base = sandbox_app.settings.fila_retry_base_s
    assert delays == [base, 2 * base, 4 * base, 8 * base]  # attempts grow apart
    assert (m.status, m.outcome) == ("dlq", "FAILED_MAX_ATTEMPTS")
    async with sandbox_app.pool.connection() as conn:
        cur = await conn.execute("SELECT kind, severity, details FROM alerts")
        alerts = await cur.fetchall()
    assert [(a["kind"], a["severity"]) for a in alerts] == [("fila.dlq", "critical")]
    assert alerts[0]["details"]["ids"] == [r.id]
    assert sandbox(sandbox_app, "/_sandbox/calls")["sendText"] == 5
    assert sandbox(sandbox_app, "/_sandbox/messages") == []

    sandbox(sandbox_app, "/_sandbox/faults", "DELETE")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "julia_cli", "fila", "dlq", "replay", str(r.id), "--operador", "ana",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert "replayed 1 message(s)" in out.decode()  # the answer is on stdout
    m = await queue.get(sandbox_app, r.id)
    assert (m.status, m.tentativas, m.motivo) == ("pendente", 0, "replayed by ana")
    # the evolution breaker opened during the outage: wait it out like a worker would
    for _ in range(5):
        clock.set(max(clock.now(), m.proxima_tentativa_em))
        await run_once(sandbox_app)
        m = await queue.get(sandbox_app, r.id)
        if m.status == "enviada":
            break
    assert m.status == "enviada" and m.tentativas == 1
    assert [x["text"] for x in sandbox(sandbox_app, "/_sandbox/messages")] == ["oi"]
    async with sandbox_app.pool.connection() as conn:
        cur = await conn.execute("SELECT operador FROM audit_log WHERE acao = 'fila.dlq_replay'")
        assert [a["operador"] for a in await cur.fetchall()] == ["ana"]


async def test_a_number_not_on_whatsapp_fails_without_retry_and_is_checked_before_prospecting(
    sandbox_app: App,
) -> None:
    dead = "5511988880000"
    sandbox(sandbox_app, "/_sandbox/numbers", "POST", json={"not_on_whatsapp": [dead]})
    pros = await queue.enqueue(
        sandbox_app, NewMessage("primeiro contato", telefone="+" + dead, tipo="prospeccao")
    )
    reply = await queue.enqueue(
        sandbox_app, NewMessage("resposta", telefone="+" + dead, tipo="resposta")
    )
    report = await run_once(sandbox_app)
    assert report.dead == 2
    for r in (pros, reply):
        m = await queue.get(sandbox_app, r.id)
        assert (m.status, m.outcome, m.tentativas) == ("dlq", "FAILED_INVALID_NUMBER", 1)
    calls = sandbox(sandbox_app, "/_sandbox/calls")
    # the prospect never cost a send; the reply (no pre-check) got Evolution's 400
    assert (calls["whatsappNumbers"], calls["sendText"]) == (1, 1)
    # the answer is cached: a second first contact does not ask again
    await queue.enqueue(sandbox_app, NewMessage("de novo", telefone="+" + dead, tipo="campanha"))
    await run_once(sandbox_app)
    assert sandbox(sandbox_app, "/_sandbox/calls")["whatsappNumbers"] == 1
    async with sandbox_app.pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) AS n FROM alerts")
        assert (await cur.fetchone()) == {"n": 0}  # a bad number is not an incident


async def test_a_read_timeout_is_uncertain_not_retried_and_reconciliation_settles_it(
    sandbox_app: App,
) -> None:
    app = sandbox_app
    # a gateway slower than our timeout: the message may have gone out
    app.extensions.pop("gateways", None)
    app.settings = app.settings.model_copy(update={"http_read_timeout_s": 0.2})
    sandbox(app, "/_sandbox/faults", "POST", json={"latency_ms": 600})
    r = await queue.enqueue(app, NewMessage("talvez", telefone=PHONE))
    report = await run_once(app)
    assert report.uncertain == 1
    m = await queue.get(app, r.id)
    assert (m.status, m.outcome, m.motivo) == ("incerta", "OUTCOME_UNKNOWN", "GATEWAY_TIMEOUT")
    assert await queue.claim(app, "w2", 10) == []  # never resent blindly
    sandbox(app, "/_sandbox/faults", "DELETE")
    for _ in range(100):  # wait (bounded) for the slow request to land in its history
        if sandbox(app, "/_sandbox/messages"):
            break
        await asyncio.sleep(0.05)
    result = await send.reconcile(app, min_age_s=0)
    assert result.as_dict() == {"sent": 1, "requeued": 0, "held": 0}
    m = await queue.get(app, r.id)
    [seen] = sandbox(app, "/_sandbox/messages")
    assert (m.status, m.provider_message_id) == ("enviada", seen["id"])


async def test_reconcile_requeues_what_the_gateway_never_got(
    sandbox_app: App, clock: FrozenClock
) -> None:
    app = sandbox_app
    ids = (
        await queue.enqueue_many(app, [NewMessage(f"m{i}", telefone=PHONE) for i in range(2)])
    ).ids
    await queue.claim(app, "killed", 10)
    await queue.mark_send_started(app, "killed", {i: ("julia", None) for i in ids})
    # the worker reached the gateway for m0 only, then died
    gw = send.registry.default_gateway(app)
    sent = await gw.send_text("julia", PHONE.lstrip("+"), "m0")
    clock.advance(app.settings.fila_lease_s + 1)
    assert (await queue.rescue(app)).uncertain == 2
    assert (await send.reconcile(app)).as_dict() == {"sent": 1, "requeued": 1, "held": 0}
    m0, m1 = await queue.get(app, ids[0]), await queue.get(app, ids[1])
    assert (m0.status, m0.provider_message_id) == ("enviada", sent.provider_message_id)
    assert (m1.status, m1.send_started_at) == ("pendente", None)
    await run_once(app)
    assert sorted(x["text"] for x in sandbox(app, "/_sandbox/messages")) == ["m0", "m1"]


async def test_without_a_gateway_history_uncertain_sends_wait_for_an_operator(
    sandbox_app: App, clock: FrozenClock
) -> None:
    app = sandbox_app
    r = await queue.enqueue(app, NewMessage("x", telefone=PHONE))
    await queue.claim(app, "killed", 1)
    await queue.mark_send_started(app, "killed", {r.id: ("zapi-1", None)})
    clock.advance(app.settings.fila_lease_s + 1)
    await queue.rescue(app)
    app.settings = app.settings.model_copy(update={"gateway_provider": "zapi"})
    assert (await send.reconcile(app)).as_dict() == {"sent": 0, "requeued": 0, "held": 1}
    assert (await queue.get(app, r.id)).status == "incerta"
    settled = await queue.resolve_uncertain(app, r.id, sent=True, actor=audit.Actor("ana"))
    assert (settled.status, settled.outcome, settled.motivo) == (
        "enviada",
        "SENT",
        "confirmed sent by ana",
    )
    with pytest.raises(Conflict):
        await queue.resolve_uncertain(app, r.id, sent=False)
    other = await queue.enqueue(app, NewMessage("y", telefone=PHONE))
    await queue.claim(app, "killed2", 1)
    await queue.mark_send_started(app, "killed2", {other.id: ("zapi-1", None)})
    clock.advance(app.settings.fila_lease_s + 1)
    await queue.rescue(app)
    again = await queue.resolve_uncertain(app, other.id, sent=False, actor=audit.Actor("ana"))
    assert (again.status, again.send_started_at) == ("pendente", None)


async def test_a_rate_limit_denial_reschedules_without_spending_an_attempt(
    sandbox_app: App, clock: FrozenClock
) -> None:
    app = sandbox_app
    app.settings = app.settings.model_copy(update={"rate_limits_enabled": True})
    clock.set(datetime(2026, 1, 4, 15, 0, tzinfo=UTC))  # a Sunday
    r = await queue.enqueue(app, NewMessage("oferta", telefone=PHONE, tipo="prospeccao"))
    report = await run_once(app)
    assert report.rescheduled == 1
    m = await queue.get(app, r.id)
    assert (m.status, m.outcome, m.tentativas) == ("pendente", "RESCHEDULED_RATE_LIMIT", 0)
    assert "business_hours" in (m.motivo or "")
    assert m.proxima_tentativa_em == datetime(2026, 1, 5, 11, 0, tzinfo=UTC)  # Mon 08:00 BRT
    assert sandbox(app, "/_sandbox/messages") == []
    clock.set(m.proxima_tentativa_em)
    assert (await run_once(app)).sent == 1


async def test_an_open_breaker_reschedules_to_its_retry_time(
    sandbox_app: App, clock: FrozenClock
) -> None:
    app = sandbox_app
    await breaker.force_open(app, "evolution", "maintenance", audit.Actor("ops"))
    r = await queue.enqueue(app, NewMessage("x", telefone=PHONE))
    await run_once(app)
    m = await queue.get(app, r.id)
    assert (m.status, m.outcome, m.tentativas) == ("pendente", "FAILED_CIRCUIT_OPEN", 0)
    assert m.proxima_tentativa_em > clock.now()
    assert sandbox(app, "/_sandbox/messages") == []


async def test_outcome_hooks_see_every_attempt(sandbox_app: App) -> None:
    seen: list[SendOutcome] = []

    async def hook(app: App, outcome: SendOutcome) -> None:
        seen.append(outcome)

    async def broken(app: App, outcome: SendOutcome) -> None:
        raise RuntimeError("a bad hook never hurts the queue")

    send.on_outcome(broken)
    send.on_outcome(hook)
    try:
        await queue.enqueue(sandbox_app, NewMessage("x", telefone=PHONE))
        assert (await run_once(sandbox_app)).sent == 1
    finally:
        send.remove_outcome_hook(hook)
        send.remove_outcome_hook(broken)
    [o] = seen
    assert o.outcome == "SENT" and o.route is not None and o.route.instance == "julia"
    assert o.latency_s is not None and o.error is None


@pytest.mark.parametrize("due", [timedelta(minutes=5)])
async def test_a_scheduled_message_waits_for_its_time(
    sandbox_app: App, clock: FrozenClock, due: timedelta
) -> None:
    await queue.enqueue(
        sandbox_app, NewMessage("depois", telefone=PHONE, agendar_para=clock.now() + due)
    )
    assert (await run_once(sandbox_app)).claimed == 0
    clock.advance(due.total_seconds())
    assert (await run_once(sandbox_app)).sent == 1


async def test_a_worker_that_cannot_renew_its_lease_stops_sending(
    sandbox_app: App, clock: FrozenClock
) -> None:
    app = sandbox_app
    keeper = send.LeaseKeeper(app, "w1")
    ids = (
        await queue.enqueue_many(app, [NewMessage(f"m{i}", telefone=PHONE) for i in range(2)])
    ).ids
    batch = await queue.claim(app, "w1", 10)
    clock.advance(app.settings.fila_lease_s * 0.7)  # no renewal got through meanwhile
    report = await send.process_batch(app, "w1", batch, lease=keeper)
    assert report.sent == 0 and report.rescheduled == 2
    for i in ids:
        m = await queue.get(app, i)
        assert (m.status, m.outcome, m.tentativas) == ("pendente", "RELEASED", 0)
    assert sandbox(app, "/_sandbox/messages") == []
    batch = await queue.claim(app, "w1", 10)
    keeper.hold(m.id for m in batch)  # the worker renews what it claimed and still runs
    clock.advance(app.settings.fila_lease_s * 0.5)
    await keeper.extend()  # renewed: the leases moved and sending resumes
    leases = [(await queue.get(app, i)).lease_ate for i in ids]
    assert leases == [clock.now() + timedelta(seconds=app.settings.fila_lease_s)] * 2
    assert (await send.process_batch(app, "w1", batch, lease=keeper)).sent == 2


async def test_what_a_batch_sent_on_chips_feeds_is_written_once_for_all(sandbox_app: App) -> None:
    """Three replies to one doctor in one batch over two chips: every event, counter,
    affinity and selection result counted, and the conversation on a chip that sent."""
    app = sandbox_app
    for n in (1, 2):
        await pool.add(app, instance=f"batch-{n}", telefone=f"+55119000100{n}",
                       trust_score=85, status="active")  # fmt: skip
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO medicos (telefone, nome) VALUES (%s, 'Dr') RETURNING id", (PHONE,)
        )
        medico = (await cur.fetchone())["id"]  # type: ignore[index]
        cur = await conn.execute(
            "INSERT INTO conversas (medico_id) VALUES (%s) RETURNING id", (medico,)
        )
        conversa = (await cur.fetchone())["id"]  # type: ignore[index]
    ids = [(await queue.enqueue(app, NewMessage(f"r{i}", telefone=PHONE, tipo="resposta",
                                                medico_id=medico, conversa_id=conversa))).id
           for i in range(3)]  # fmt: skip
    assert (await run_once(app)).sent == 3

    async def one(sql: str) -> Any:
        async with app.pool.connection() as conn:
            cur = await conn.execute(sql)
            return await cur.fetchall()

    events = await one("SELECT mensagem_id, chip_id FROM chip_eventos WHERE kind = 'sent'"
                       " ORDER BY mensagem_id")  # fmt: skip
    assert [e["mensagem_id"] for e in events] == ids
    by_chip = Counter(e["chip_id"] for e in events)
    chips = await one("SELECT id, enviadas_total FROM chips")
    assert {c["id"]: c["enviadas_total"] for c in chips if c["enviadas_total"]} == by_chip
    aff = await one("SELECT chip_id, enviadas FROM chip_afinidade")
    assert {a["chip_id"]: a["enviadas"] for a in aff} == by_chip
    logged = await one("SELECT resultado FROM chip_selection_log")
    assert [r["resultado"] for r in logged] == ["sent"] * 3
    (conv,) = await one(f"SELECT chip_id FROM conversas WHERE id = {int(conversa)}")
    assert conv["chip_id"] in by_chip  # the chip of the send that finished first


async def test_a_batch_whose_selection_log_cannot_be_written_sends_nothing(
    sandbox_app: App,
) -> None:
    """The pool's log rows are written beside the "send started" commit; when Postgres
    refuses them, no message reaches the gateway and each goes back to pendente (its
    attempt given back, its send no longer marked started), to be sent by a later batch."""
    app = sandbox_app
    await pool.add(app, instance="logless", telefone="+5511900010009", trust_score=85,
                   status="active")  # fmt: skip
    replies = [NewMessage(f"r{i}", telefone=f"+55119999100{i}", tipo="resposta") for i in range(2)]
    ids = (await queue.enqueue_many(app, replies)).ids
    async with app.pool.connection() as conn:  # a real refusal, from Postgres itself
        await conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'selection log unavailable'; END $$"
        )
        await conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON chip_selection_log"
            " FOR EACH STATEMENT EXECUTE FUNCTION refuse()"
        )
    report = await run_once(app)
    assert (report.claimed, report.sent, report.uncertain) == (2, 0, 0)
    assert sandbox(app, "/_sandbox/calls").get("sendText") is None
    for mid in ids:
        m = await queue.get(app, mid)
        assert (m.status, m.outcome, m.tentativas) == ("pendente", "RELEASED", 0)
        assert m.send_started_at is None
    async with app.pool.connection() as conn:
        await conn.execute("DROP TRIGGER refuse ON chip_selection_log")
    assert (await run_once(app)).sent == 2
    assert sorted(m["text"] for m in sandbox(app, "/_sandbox/messages")) == ["r0", "r1"]
