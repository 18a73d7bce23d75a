"""Queue operations against real Postgres: enqueue, claim, finish, rescue, expire, stats."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import psycopg
import pytest

from julia.core.app import App
from julia.core.clock import FrozenClock
from julia.core.errors import Conflict, InvalidInput, InvalidPhone, NotFound
from julia.core.settings import secret
from julia.fila import bulk, queue
from julia.fila.queue import NewMessage, Result
from julia.fila.states import Outcome, Status

PHONE = "+5511999990001"


async def _count(app: App, where: str = "true") -> int:
    async with app.pool.connection() as conn:
        cur = await conn.execute(f"SELECT count(*) AS n FROM fila_mensagens WHERE {where}")
        row = await cur.fetchone()
    assert row is not None
    return int(row["n"])


async def _medico(app: App, telefone: str = PHONE, opted_out: bool = False) -> int:
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO medicos (telefone, nome, opted_out, opted_out_em)"
            " VALUES (%s, 'Dra. Teste', %s, CASE WHEN %s THEN now() END) RETURNING id",
            (telefone, opted_out, opted_out),
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row["id"])


async def test_the_same_idempotency_key_twice_gives_one_message(app: App) -> None:
    first = await queue.enqueue(
        app, NewMessage("oi", telefone="11 99999-0001", idempotency_key="k1")
    )
    again = await queue.enqueue(app, NewMessage("oi!", telefone=PHONE, idempotency_key="k1"))
    assert first.created and not again.created and first.id == again.id
    assert await _count(app) == 1
    m = await queue.get(app, first.id)
    assert m.telefone == PHONE and m.status == "pendente" and m.texto == "oi"
    assert m.proxima_tentativa_em == m.agendar_para == app.clock.now()


async def test_enqueue_links_the_doctor_and_blocks_one_already_opted_out(app: App) -> None:
    mid = await _medico(app, opted_out=True)
    r = await queue.enqueue(app, NewMessage("oi", telefone=PHONE))
    m = await queue.get(app, r.id)
    assert m.medico_id == mid and m.status == "bloqueada" and m.outcome == "BLOCKED_OPTOUT"
    by_id = await queue.enqueue(app, NewMessage("oi", medico_id=mid))
    assert (await queue.get(app, by_id.id)).telefone == PHONE


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (NewMessage("oi", telefone="123"), InvalidPhone),
        (NewMessage("", telefone=PHONE), InvalidInput),
        (NewMessage("oi", telefone=PHONE, tipo="spam"), InvalidInput),
        (NewMessage("oi", telefone=PHONE, prioridade=11), InvalidInput),
        (NewMessage("oi", telefone=PHONE, agendar_para="amanhã cedo"), InvalidInput),
        (NewMessage("oi"), InvalidInput),
        (NewMessage("oi", medico_id=999999), NotFound),
    ],
)
async def test_bad_messages_are_refused_and_change_nothing(
    app: App, message: NewMessage, error: type[Exception]
) -> None:
    with pytest.raises(error):
        await queue.enqueue(app, message)
    assert await _count(app) == 0


async def test_enqueue_many_is_all_or_nothing_and_dedupes(app: App) -> None:
    good = [NewMessage(f"m{i}", telefone=PHONE, idempotency_key=f"b{i}") for i in range(5)]
    with pytest.raises(InvalidPhone):
        await queue.enqueue_many(app, [*good, NewMessage("x", telefone="abc")])
    assert await _count(app) == 0
    res = await queue.enqueue_many(app, [*good, good[0]])
    assert (res.inserted, res.duplicates) == (5, 1)
    res = await queue.enqueue_many(app, good)
    assert (res.inserted, res.duplicates) == (0, 5)


async def test_ten_thousand_in_one_bulk_insert(app: App) -> None:
    msgs = [NewMessage(f"campanha {i}", telefone=f"+55119{i:08d}", tipo="campanha")
            for i in range(10_000)]  # fmt: skip
    res = await queue.enqueue_many(app, msgs)
    assert res.inserted == 10_000 and await _count(app, "status = 'pendente'") == 10_000


async def test_claim_takes_priority_first_then_due_time_and_never_twice(
    app: App, clock: FrozenClock
) -> None:
    now = clock.now()
    low_old = await queue.enqueue(
        app, NewMessage("low", telefone=PHONE, prioridade=1, agendar_para=now - timedelta(hours=1))
    )
    high_new = await queue.enqueue(app, NewMessage("high", telefone=PHONE, prioridade=9))
    mid_a = await queue.enqueue(
        app, NewMessage("a", telefone=PHONE, agendar_para=now - timedelta(minutes=5))
    )
    mid_b = await queue.enqueue(app, NewMessage("b", telefone=PHONE))
    future = await queue.enqueue(
        app,
        NewMessage("later", telefone=PHONE, prioridade=10, agendar_para=now + timedelta(minutes=1)),
    )
    got = await queue.claim(app, "w1", 10)
    assert [m.id for m in got] == [high_new.id, mid_a.id, mid_b.id, low_old.id]
    assert all(m.status == "processando" and m.tentativas == 1 for m in got)
    assert all(m.lease_ate == now + timedelta(seconds=app.settings.fila_lease_s) for m in got)
    assert await queue.claim(app, "w2", 10) == []
    clock.advance(60)
    assert [m.id for m in await queue.claim(app, "w2", 10)] == [future.id]


async def test_concurrent_claims_share_the_queue_without_overlap(app: App) -> None:
    await queue.enqueue_many(app, [NewMessage(f"m{i}", telefone=PHONE) for i in range(300)])
    batches = await asyncio.gather(*(queue.claim(app, f"w{i}", 50) for i in range(8)))
    ids = [m.id for b in batches for m in b]
    assert len(ids) == len(set(ids)) == 300


async def test_finish_sent_and_retry_and_lost_lease(app: App, clock: FrozenClock) -> None:
    a, b = (await queue.enqueue_many(app, [NewMessage("a", telefone=PHONE),
                                           NewMessage("b", telefone=PHONE)])).ids  # fmt: skip
    await queue.claim(app, "w1", 10)
    await queue.mark_send_started(app, "w1", {a: ("julia", None), b: ("julia", None)})
    later = clock.now() + timedelta(seconds=30)
    done = await queue.finish(
        app,
        "w1",
        [
            Result(a, Status.ENVIADA, Outcome.SENT, provider_message_id="P1"),
            Result(b, Status.PENDENTE, Outcome.RETRY, erro="boom", proxima=later),
        ],
    )
    assert done == {a, b}
    ma, mb = await queue.get(app, a), await queue.get(app, b)
    assert (ma.status, ma.provider_message_id, ma.enviada_em) == ("enviada", "P1", clock.now())
    assert (mb.status, mb.proxima_tentativa_em, mb.send_started_at) == ("pendente", later, None)
    assert mb.ultimo_erro == "boom" and mb.lease_owner is None
    # a worker that lost its lease changes nothing
    assert await queue.finish(app, "w9", [Result(b, Status.ENVIADA, Outcome.SENT)]) == set()
    hist = await queue.history(app, a)
    assert [(h["de"], h["para"], h["worker"]) for h in hist] == [("processando", "enviada", "w1")]


async def test_rescue_requeues_unsent_and_holds_started_sends(app: App, clock: FrozenClock) -> None:
    ids = (
        await queue.enqueue_many(app, [NewMessage(f"m{i}", telefone=PHONE) for i in range(3)])
    ).ids
    await queue.claim(app, "dead-worker", 10)
    await queue.mark_send_started(app, "dead-worker", {ids[0]: ("julia", None)})
    assert (await queue.rescue(app)).as_dict() == {"requeued": 0, "uncertain": 0, "dead": 0}
    clock.advance(app.settings.fila_lease_s + 1)
    assert (await queue.rescue(app)).as_dict() == {"requeued": 2, "uncertain": 1, "dead": 0}
    started = await queue.get(app, ids[0])
    assert (started.status, started.outcome) == ("incerta", "OUTCOME_UNKNOWN")
    again = await queue.claim(app, "w2", 10)
    assert sorted(m.id for m in again) == ids[1:]
    assert all(m.tentativas == 2 for m in again)


async def test_rescue_after_the_last_attempt_goes_to_the_dlq_with_an_alert(
    app: App, clock: FrozenClock
) -> None:
    r = await queue.enqueue(app, NewMessage("x", telefone=PHONE, max_tentativas=1))
    await queue.claim(app, "dead", 1)
    clock.advance(app.settings.fila_lease_s + 1)
    assert (await queue.rescue(app)).dead == 1
    m = await queue.get(app, r.id)
    assert (m.status, m.outcome) == ("dlq", "FAILED_MAX_ATTEMPTS")
    async with app.pool.connection() as conn:
        cur = await conn.execute("SELECT kind, details FROM alerts")
        alerts = await cur.fetchall()
    assert [a["kind"] for a in alerts] == ["fila.dlq"] and alerts[0]["details"]["ids"] == [r.id]


async def test_release_worker_gives_back_unsent_and_holds_started(app: App) -> None:
    ids = (
        await queue.enqueue_many(app, [NewMessage(f"m{i}", telefone=PHONE) for i in range(2)])
    ).ids
    await queue.claim(app, "w1", 10)
    await queue.mark_send_started(app, "w1", {ids[1]: ("julia", None)})
    assert await queue.release_worker(app, "w1") == {"released": 1, "uncertain": 1}
    m0, m1 = await queue.get(app, ids[0]), await queue.get(app, ids[1])
    assert (m0.status, m0.tentativas, m0.outcome) == ("pendente", 0, "RELEASED")
    assert m1.status == "incerta"


async def test_expire_after_24_hours_pending(app: App, clock: FrozenClock) -> None:
    old = await queue.enqueue(app, NewMessage("old", telefone=PHONE))
    clock.advance(hours=23)
    young = await queue.enqueue(app, NewMessage("young", telefone=PHONE))
    assert await queue.expire(app) == 0
    clock.advance(hours=1, seconds=1)
    assert await queue.expire(app) == 1
    m = await queue.get(app, old.id)
    assert (m.status, m.outcome) == ("expirada", "FAILED_EXPIRED")
    assert (await queue.get(app, young.id)).status == "pendente"


async def test_cancel_and_block_pending_for_medico(app: App) -> None:
    mid = await _medico(app)
    a = await queue.enqueue(app, NewMessage("a", medico_id=mid))
    b = await queue.enqueue(app, NewMessage("b", telefone=PHONE))
    c = await queue.enqueue(app, NewMessage("c", telefone="+5511988887777"))
    cancelled = await queue.cancel(app, c.id, motivo="engano")
    assert (cancelled.status, cancelled.outcome) == ("cancelada", "CANCELLED")
    with pytest.raises(Conflict):
        await queue.cancel(app, c.id)
    with pytest.raises(NotFound):
        await queue.cancel(app, 424242)
    assert await queue.block_pending_for_medico(app, mid, "opt-out: PARE") == 2
    for r in (a, b):
        m = await queue.get(app, r.id)
        assert (m.status, m.outcome, m.motivo) == ("bloqueada", "BLOCKED_OPTOUT", "opt-out: PARE")


async def test_cancel_refuses_a_message_whose_send_started(app: App) -> None:
    r = await queue.enqueue(app, NewMessage("a", telefone=PHONE))
    await queue.claim(app, "w1", 1)
    await queue.mark_send_started(app, "w1", {r.id: ("julia", None)})
    with pytest.raises(Conflict, match="being sent"):
        await queue.cancel(app, r.id)


async def test_stats_count_every_status_and_the_oldest_pending(
    app: App, clock: FrozenClock
) -> None:
    await queue.enqueue(app, NewMessage("a", telefone=PHONE))
    clock.advance(90)
    r = await queue.enqueue(app, NewMessage("b", telefone=PHONE))
    await queue.enqueue(app, NewMessage("c", telefone=PHONE, agendar_para="+1h"))
    await queue.cancel(app, r.id)
    st = await queue.stats(app)
    assert set(st["counts"]) == {s.value for s in Status}
    assert st["pendente"] == 2 and st["cancelada"] == 1 and st["enviada"] == 0
    assert st["oldest_pending_age_s"] == 90.0


async def test_dlq_replay_resets_attempts_and_is_audited(app: App) -> None:
    r = await queue.enqueue(app, NewMessage("a", telefone=PHONE, max_tentativas=1))
    await queue.claim(app, "w1", 1)
    await queue.finish(app, "w1", [Result(r.id, Status.DLQ, Outcome.FAILED_MAX_ATTEMPTS, erro="x")])
    assert await queue.dlq_replay(app, all_=True, dry_run=True) == [r.id]
    assert (await queue.get(app, r.id)).status == "dlq"
    other = await queue.enqueue(app, NewMessage("b", telefone=PHONE))
    with pytest.raises(Conflict):
        await queue.dlq_replay(app, [other.id])
    assert await queue.dlq_replay(app, [r.id]) == [r.id]
    m = await queue.get(app, r.id)
    assert (m.status, m.tentativas, m.outcome) == ("pendente", 0, "REPLAYED")
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT operador, detalhes FROM audit_log WHERE acao = 'fila.dlq_replay'"
        )
        rows = await cur.fetchall()
    assert rows[0]["operador"] == "tester" and rows[0]["detalhes"]["ids"] == [r.id]


async def test_dlq_purge_deletes_only_old_dead_letters(app: App, clock: FrozenClock) -> None:
    r = await queue.enqueue(app, NewMessage("a", telefone=PHONE, max_tentativas=1))
    await queue.claim(app, "w1", 1)
    await queue.finish(app, "w1", [Result(r.id, Status.DLQ, Outcome.FAILED_MAX_ATTEMPTS)])
    assert await queue.dlq_purge(app, older_than_days=1) == 0
    clock.advance(days=2)
    assert await queue.dlq_purge(app, older_than_days=1) == 1
    assert await _count(app) == 0


async def test_bulk_enqueue_takes_phone_and_opt_out_from_the_doctor_and_each_key_once(
    app: App,
) -> None:
    ok, out = await _medico(app), await _medico(app, "+5511999990002", opted_out=True)
    now = app.clock.now()

    async def put(ids: list[int], textos: list[str]) -> bulk.BulkResult:
        async with app.pool.connection() as conn, conn.transaction():
            return await bulk.enqueue_columns(
                app, conn, tipo="campanha", medico_ids=ids, textos=textos,
                due=[now] * len(ids), keys=[f"k:{i}" for i in ids],
            )  # fmt: skip

    first = await put([ok, out, 999_999], [" oi ", "oi", "oi"])
    assert (first.inserted, first.blocked, first.duplicates, first.gone) == (2, 1, 0, 1)
    again = await put([ok, out], ["oi", "oi"])
    assert (again.inserted, again.duplicates) == (0, 2)
    m = await _count(app, f"medico_id = {ok} AND telefone = '{PHONE}' AND texto = 'oi'"
                          " AND status = 'pendente'")  # fmt: skip
    assert m == 1
    assert await _count(app, f"medico_id = {out} AND status = 'bloqueada'") == 1
    with pytest.raises(InvalidInput):
        await put([ok], ["  "])
    with pytest.raises(InvalidInput):
        async with app.pool.connection() as conn:
            await bulk.enqueue_columns(app, conn, tipo="nada", medico_ids=[ok], textos=["x"],
                                       due=[now], keys=["k2"])  # fmt: skip
    assert await _count(app) == 2


async def test_a_doctor_id_that_is_not_there_rejects_the_whole_batch(app: App) -> None:
    mid = await _medico(app)
    batch = [NewMessage("a", medico_id=mid, idempotency_key="d1"),
             NewMessage("b", medico_id=mid + 999, idempotency_key="d2")]  # fmt: skip
    with pytest.raises(NotFound, match=f"no doctor with id {mid + 999}"):
        await queue.enqueue_many(app, batch)
    assert await _count(app) == 0
    res = await queue.enqueue_many(app, batch[:1])  # a real one then a duplicate of it
    again = await queue.enqueue_many(app, batch[:1])
    assert (res.inserted, again.inserted, again.duplicates) == (1, 0, 1)


async def test_an_enqueue_wakes_the_listeners_once_it_commits(app: App) -> None:
    blocked = await _medico(app, "+5511999990002", opted_out=True)
    async with await psycopg.AsyncConnection.connect(
        secret(app.settings.database_url), autocommit=True
    ) as listener:
        await listener.execute(f"LISTEN {queue.CHANNEL}")

        async def woken() -> bool:
            return bool([n async for n in listener.notifies(timeout=0.5)])

        await queue.enqueue(app, NewMessage("para o bloqueado", medico_id=blocked))
        assert not await woken()  # only a blocked message: nothing for the workers
        await queue.enqueue(app, NewMessage("oi", telefone=PHONE, idempotency_key="w1"))
        assert await woken()
        await queue.enqueue(app, NewMessage("oi", telefone=PHONE, idempotency_key="w1"))
        assert not await woken()  # a duplicate queues nothing
