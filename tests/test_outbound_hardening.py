"""The send path under a hostile or broken world (issue 12, items 1-3): an opt-out stops
what is already queued, no error leaves a message ``processando``, a late gateway
acceptance is never sent twice."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from julia.core.app import App
from julia.core.clock import FrozenClock
from julia.core.errors import ConfigError
from julia.domain import medicos
from julia.fila import queue
from julia.fila.queue import NewMessage
from julia.gateways.base import RETRY_AFTER_MAX_S, parse_retry_after
from julia.guardrails import rules as guardrails_rules
from julia.outbound import consumer, guards, send
from julia.sandbox.gateway import control as sandbox
from julia.settings import Settings

PHONE = "+5511999990001"


async def opt_out_mid_batch(app: App, watch: guards.OptOutWatch | None = None) -> None:
    """20 messages claimed in one batch, sent one at a time at 100 ms each; the doctor
    opts out after two reached the gateway (and, with ``watch``, once it was heard): at
    most the one already at the gateway reaches it after that."""
    async with app.pool.connection() as conn:
        await conn.execute("INSERT INTO medicos (telefone, nome) VALUES (%s, 'Dr. X')", (PHONE,))
    await queue.enqueue_many(app, [NewMessage(f"m{i}", telefone=PHONE) for i in range(20)])
    sandbox(app, "/_sandbox/faults", "POST", json={"latency_ms": 100})
    batch = await queue.claim(app, "w1", 100)
    task = asyncio.create_task(send.process_batch(app, "w1", batch, concurrency=1))
    for _ in range(200):
        if len(await asyncio.to_thread(sandbox, app, "/_sandbox/messages")) >= 2:
            break
        await asyncio.sleep(0.02)
    before = watch.heard if watch is not None else 0
    await medicos.optout(app, PHONE, motivo="PARE")
    if watch is not None:
        for _ in range(500):  # announced by the trigger, heard by the listener
            if watch.heard > before:
                break
            await asyncio.sleep(0.01)
        assert watch.heard > before
    at_optout = len(await asyncio.to_thread(sandbox, app, "/_sandbox/messages"))
    report = await task
    reached = len(await asyncio.to_thread(sandbox, app, "/_sandbox/messages"))
    assert reached <= at_optout + 1, (at_optout, reached)  # only what was in flight
    assert report.blocked >= 20 - reached and report.sent == reached


async def test_an_opt_out_stops_what_is_already_claimed_and_waiting(sandbox_app: App) -> None:
    await opt_out_mid_batch(sandbox_app)


async def test_a_huge_retry_after_reschedules_the_batch_instead_of_killing_it(
    sandbox_app: App, clock: FrozenClock
) -> None:
    app = sandbox_app
    ids = (
        await queue.enqueue_many(app, [NewMessage(f"m{i}", telefone=PHONE) for i in range(5)])
    ).ids
    sandbox(app, "/_sandbox/faults", "POST", json={"status": 429, "retry_after": "1e12"})
    report = await send.process_batch(app, "w1", await queue.claim(app, "w1", 10))
    assert report.retried == 5
    for i in ids:
        m = await queue.get(app, i)
        assert m.status == "pendente" and m.lease_owner is None
        assert m.proxima_tentativa_em <= clock.now() + timedelta(seconds=RETRY_AFTER_MAX_S)


async def test_an_http_date_retry_after_is_a_reschedule_not_an_uncertain_send(
    sandbox_app: App, clock: FrozenClock
) -> None:
    app = sandbox_app
    clock.set(datetime.now(UTC))
    when = format_datetime(clock.now() + timedelta(minutes=10), usegmt=True)
    r = await queue.enqueue(app, NewMessage("x", telefone=PHONE))
    sandbox(app, "/_sandbox/faults", "POST", json={"status": 429, "retry_after": when})
    await send.process_batch(app, "w1", await queue.claim(app, "w1", 10))
    m = await queue.get(app, r.id)
    assert (m.status, m.outcome) == ("pendente", "RETRY")
    assert m.proxima_tentativa_em >= clock.now() + timedelta(minutes=9)


def test_retry_after_parsing_never_raises() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after("1e12", now) == RETRY_AFTER_MAX_S
    assert parse_retry_after("inf", now) == RETRY_AFTER_MAX_S
    assert parse_retry_after("-5", now) == 0
    assert parse_retry_after("Thu, 01 Jan 2026 00:02:00 GMT", now) == 120
    assert parse_retry_after("Wed, 31 Dec 2025 00:00:00 GMT", now) == 0  # in the past
    for junk in ("nan", "soon", "", "   ", None, "Mon, 99 Foo 99999 99:99:99 GMT"):
        assert parse_retry_after(junk, now) is None


async def test_a_bug_inside_a_batch_leaves_no_message_processando(
    sandbox_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = sandbox_app
    ids = (
        await queue.enqueue_many(
            app, [NewMessage(f"m{i}", telefone=PHONE, tipo="prospeccao") for i in range(3)]
        )
    ).ids

    async def broken(*_: object) -> dict[str, bool]:
        raise RuntimeError("a bug in the number check")

    monkeypatch.setattr(send, "numbers_on_whatsapp", broken)
    keeper = send.LeaseKeeper(app, "w1")
    report = await send.process_batch(app, "w1", await queue.claim(app, "w1", 10), lease=keeper)
    assert report.rescheduled == 3 and keeper.held == set()
    for i in ids:
        m = await queue.get(app, i)
        assert (m.status, m.outcome, m.tentativas, m.lease_owner) == (
            "pendente", "RELEASED", 0, None,
        )  # fmt: skip


async def test_leases_are_renewed_only_for_work_still_running(
    sandbox_app: App, clock: FrozenClock
) -> None:
    app = sandbox_app
    await queue.enqueue_many(app, [NewMessage(f"m{i}", telefone=PHONE) for i in range(2)])
    running, abandoned = await queue.claim(app, "w1", 10)
    keeper = send.LeaseKeeper(app, "w1")
    keeper.hold([running.id])
    clock.advance(10)
    await keeper.extend()
    lease = timedelta(seconds=app.settings.fila_lease_s)
    assert (await queue.get(app, running.id)).lease_ate == clock.now() + lease
    assert (await queue.get(app, abandoned.id)).lease_ate == abandoned.lease_ate


def test_a_lease_not_longer_than_a_send_is_refused(settings: Settings) -> None:
    bad = settings.model_copy(update={"fila_lease_s": 9.0, "http_read_timeout_s": 15.0})
    with pytest.raises(ConfigError, match="JULIA_FILA_LEASE_S"):
        send.check_lease(bad)
    send.check_lease(settings)  # the defaults: 60 s against 20 s


async def test_the_worker_refuses_to_start_with_such_a_lease(sandbox_app: App) -> None:
    app = sandbox_app
    app.settings = app.settings.model_copy(update={"fila_lease_s": 9.0})
    with pytest.raises(ConfigError, match="HTTP deadline"):
        await consumer.run(app, asyncio.Event(), "w1")


async def test_a_late_acceptance_is_found_by_reconciliation_not_sent_again(
    sandbox_app: App, clock: FrozenClock
) -> None:
    """The lease (25 s) ran out while the send (deadline 15 s + margin) could still land:
    reconciliation waits for the deadline and its margin before calling it not sent."""
    app = sandbox_app
    app.settings = app.settings.model_copy(
        update={"fila_lease_s": 25.0, "http_read_timeout_s": 10.0}
    )
    r = await queue.enqueue(app, NewMessage("tarde", telefone=PHONE))
    await queue.claim(app, "killed", 1)
    await queue.mark_send_started(app, "killed", {r.id: ("julia", None)})
    clock.advance(26)
    assert (await queue.rescue(app)).uncertain == 1
    assert (await send.reconcile(app)).as_dict() == {"sent": 0, "requeued": 0, "held": 0}
    gw = send.registry.default_gateway(app)
    accepted = await gw.send_text("julia", PHONE.lstrip("+"), "tarde")  # the late acceptance
    clock.advance(send.reconcile_min_age_s(app.settings))
    assert (await send.reconcile(app)).as_dict() == {"sent": 1, "requeued": 0, "held": 0}
    m = await queue.get(app, r.id)
    assert (m.status, m.provider_message_id) == ("enviada", accepted.provider_message_id)
    assert len(sandbox(app, "/_sandbox/messages")) == 1


async def test_when_the_consent_check_cannot_run_nothing_is_sent_and_nothing_is_uncertain(
    sandbox_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = sandbox_app
    r = await queue.enqueue(app, NewMessage("x", telefone=PHONE))
    batch = await queue.claim(app, "w1", 10)

    async def unreachable(*_: object) -> None:
        raise OSError("postgres went away")

    monkeypatch.setattr(guardrails_rules, "opted_out_now", unreachable)
    await send.process_batch(app, "w1", batch)
    m = await queue.get(app, r.id)
    assert (m.status, m.outcome, m.tentativas) == ("pendente", "RELEASED", 0)
    assert sandbox(app, "/_sandbox/messages") == []


# --- the last-moment opt-out query, skipped only when nothing can be new --------------


@pytest.fixture
async def listening(sandbox_app: App) -> AsyncIterator[guards.OptOutWatch]:
    """The worker's listener (``LISTEN julia_fila, julia_optout``) running on the app."""
    watch = guards.optout_watch(sandbox_app)
    task = asyncio.create_task(consumer.listen(sandbox_app, asyncio.Event()))
    for _ in range(500):
        if watch.live:
            break
        await asyncio.sleep(0.01)
    assert watch.live
    try:
        yield watch
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def counting_queries(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the last-moment opt-out queries (they still run, for real)."""
    calls: list[int] = []
    real = guardrails_rules.opted_out_now

    async def counted(app: App, ids: Any, tels: Any) -> Any:
        calls.append(len(tels))
        return await real(app, ids, tels)

    monkeypatch.setattr(guardrails_rules, "opted_out_now", counted)
    return calls


async def test_a_listening_worker_skips_the_query_when_no_opt_out_was_announced(
    sandbox_app: App, listening: guards.OptOutWatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = counting_queries(monkeypatch)
    await queue.enqueue_many(
        sandbox_app, [NewMessage(f"m{i}", telefone=f"+55119999900{i:02d}") for i in range(10)]
    )
    report = await send.process_batch(sandbox_app, "w1", await queue.claim(sandbox_app, "w1", 10))
    assert report.sent == 10 and calls == []


async def test_without_the_listener_every_send_is_checked(
    sandbox_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = counting_queries(monkeypatch)
    await queue.enqueue_many(
        sandbox_app, [NewMessage(f"m{i}", telefone=f"+55119999900{i:02d}") for i in range(10)]
    )
    report = await send.process_batch(
        sandbox_app, "w1", await queue.claim(sandbox_app, "w1", 10), concurrency=1
    )
    assert report.sent == 10 and sum(calls) == 10


async def test_a_listening_worker_stops_what_waits_once_the_opt_out_is_announced(
    sandbox_app: App, listening: guards.OptOutWatch
) -> None:
    """As without the listener: the opt-out is announced, heard, and stops the rest."""
    await opt_out_mid_batch(sandbox_app, listening)


async def test_a_send_that_waited_longer_than_the_trust_is_checked(
    settings: Settings, clock: FrozenClock, sandbox_gateway: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    quick = settings.model_copy(
        update={"evolution_url": sandbox_gateway, "rate_limits_enabled": False,
                "worker_optout_trust_s": 0.0}
    )  # fmt: skip
    async with App.open(quick, clock=clock) as app:
        watch = guards.optout_watch(app)
        task = asyncio.create_task(consumer.listen(app, asyncio.Event()))
        try:
            for _ in range(500):
                if watch.live:
                    break
                await asyncio.sleep(0.01)
            calls = counting_queries(monkeypatch)
            await queue.enqueue(app, NewMessage("x", telefone=PHONE))
            report = await send.process_batch(app, "w1", await queue.claim(app, "w1", 10))
            assert report.sent == 1 and calls == [1]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_every_opt_out_write_is_announced(sandbox_app: App) -> None:
    """The trigger announces what the query would find: a new opt-out, an opted-out
    doctor inserted or given a new phone; not an unrelated update."""
    import psycopg

    app = sandbox_app
    async with await psycopg.AsyncConnection.connect(
        app.endpoints.database_url, autocommit=True
    ) as ear:
        await ear.execute(f"LISTEN {guardrails_rules.OPTOUT_CHANNEL}")

        async def announced(sql: str, *params: Any) -> bool:
            async with app.pool.connection() as conn:
                await conn.execute(sql, params)
            got = False
            gen = ear.notifies(timeout=0.5)
            async for _ in gen:
                got = True
                break
            return got

        insert = "INSERT INTO medicos (telefone, nome) VALUES (%s, 'Dr. Y')"
        assert not await announced(insert, "+5511999990077")
        optout = "UPDATE medicos SET opted_out = true, opted_out_em = now() WHERE telefone = %s"
        assert await announced(optout, "+5511999990077")
        assert not await announced("UPDATE medicos SET nome = 'Dra. Y' WHERE telefone = %s",
                                   "+5511999990077")  # fmt: skip
        assert await announced("UPDATE medicos SET telefone = %s WHERE telefone = %s",
                               "+5511999990078", "+5511999990077")  # fmt: skip
        assert await announced(
            "INSERT INTO medicos (telefone, nome, opted_out, opted_out_em)"
            " VALUES (%s, 'Dr. Z', true, now())", "+5511999990079",
        )  # fmt: skip


async def test_a_listener_whose_echoes_never_come_back_is_not_trusted(
    sandbox_app: App, pg_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through a transaction pooler LISTEN succeeds and nothing is delivered. Here the
    listener listens on another database than the one its echoes (and the opt-outs) are
    announced in: it never hears them, so it never counts as listening, and every send
    is checked."""
    deaf_ear = dataclasses.replace(
        sandbox_app,
        endpoints=dataclasses.replace(sandbox_app.endpoints, database_url=pg_server_url),
    )
    task = asyncio.create_task(consumer.listen(deaf_ear, asyncio.Event()))
    try:
        await asyncio.sleep(1.0)  # its first echo was sent at once; heard, it takes ms
        assert not guards.optout_watch(sandbox_app).live
        calls = counting_queries(monkeypatch)
        await queue.enqueue_many(
            sandbox_app, [NewMessage(f"m{i}", telefone=f"+55119999900{i:02d}") for i in range(5)]
        )
        batch = await queue.claim(sandbox_app, "w1", 10)
        report = await send.process_batch(sandbox_app, "w1", batch, concurrency=1)
        assert report.sent == 5 and sum(calls) == 5
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_the_watch_goes_deaf_when_its_echoes_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(guards.time, "monotonic", lambda: now[0])
    watch = guards.OptOutWatch()
    assert not watch.live
    watch.echoed()
    assert watch.live and watch.heard == 1  # became live: what came before is unknown
    now[0] += guards.ECHO_LOST_S - 0.1
    watch.echoed()
    assert watch.live and watch.heard == 1  # still live: nothing was missed
    now[0] += guards.ECHO_LOST_S + 0.1
    assert not watch.live
    watch.echoed()
    assert watch.heard == 2  # deaf for a while: a batch screened before cannot be trusted
