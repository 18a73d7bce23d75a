"""Campaigns over real Postgres and Redis: exactly once, opt-out at send, pace, auto-pause."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from campanha_seed import count, phone, seed_medicos, seed_sent
from julia.campanhas import envio, monitor, store, window
from julia.campanhas import status as campanha_status
from julia.campanhas.segment import Segmento
from julia.chips import pool
from julia.core import audit
from julia.core.app import App
from julia.core.clock import FrozenClock
from julia.core.errors import Conflict, InvalidInput
from julia.domain import medicos
from julia.fila import queue
from julia.outbound import send
from julia.sandbox.gateway import control as sandbox

OP = audit.Actor("tester")
TZ = ZoneInfo("America/Sao_Paulo")


def nova(texto: str = "Oi {nome}, plantão de {especialidade} em {cidade}?", **kw: object):
    return store.NovaCampanha(nome="Cardio SP", texto=texto,
                              segmento=kw.pop("segmento", Segmento(uf="SP")), **kw)  # type: ignore[arg-type]  # fmt: skip


class Killed(Exception):
    pass


async def test_ten_thousand_doctors_enqueue_exactly_the_rest_once_twice_or_killed(
    app: App,
) -> None:
    ids = await seed_medicos(app, 10_000, opted_out_every=0)
    opted = ids[:300]  # 3 %
    contacted = ids[300:800]  # 5 %, last week
    async with app.pool.connection() as conn:
        await conn.execute(
            "UPDATE medicos SET opted_out = true, opted_out_em = %s, opted_out_motivo = 'pare'"
            " WHERE id = ANY(%s)",
            (app.clock.now(), opted),
        )
    await seed_sent(app, contacted, app.clock.now() - timedelta(days=3))

    c = await envio.criar(app, nova(), actor=OP)
    p = await envio.preview(app, c.id)
    assert p["count"] == 9_200 and p["removed"] == {"optout": 300, "limite_contato": 500}
    assert len(p["examples"]) == 10 and all(
        e["texto"].startswith(("Oi João,", "Oi Ana,")) for e in p["examples"]
    )

    first = await envio.enviar(app, c.id, actor=OP)
    assert (first["enqueued"], first["already"]) == (9_200, 0)
    assert first["skipped"] == {"optout": 300, "limite_contato": 500}
    again = await envio.enviar(app, c.id, actor=OP)
    assert (again["enqueued"], again["already"]) == (0, 9_200)
    q = "SELECT count(*) FROM fila_mensagens WHERE campanha_id = %s"
    assert await count(app, q, c.id) == 9_200
    assert await count(app, q + " AND medico_id = ANY(%s)", c.id, opted + contacted) == 0
    dup = "SELECT count(*) FROM (SELECT medico_id FROM fila_mensagens WHERE campanha_id = %s"
    assert await count(app, dup + " GROUP BY 1 HAVING count(*) > 1) d", c.id) == 0

    # killed mid-run (after three batches), then run again: still each doctor once
    k = await envio.criar(app, nova(), actor=OP)

    def die(done: int, total: int) -> None:
        if done >= 3_000:
            raise Killed

    with pytest.raises(Killed):
        await envio.enviar(app, k.id, actor=OP, progress=die)
    assert await count(app, q, k.id) == 3_000
    rest = await envio.enviar(app, k.id, actor=OP)
    assert (rest["enqueued"], rest["already"]) == (6_200, 3_000)
    assert await count(app, q, k.id) == 9_200
    assert await count(app, dup + " GROUP BY 1 HAVING count(*) > 1) d", k.id) == 0
    # the pool's capacity caps each day (no chips: the single instance's daily share)
    daily = app.settings.rate_limit_chip_daily // app.settings.rate_limit_campanha_weight
    cur_days = Counter()
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT agendar_para FROM fila_mensagens WHERE campanha_id = %s", (c.id,)
        )
        for r in await cur.fetchall():
            cur_days[r["agendar_para"].astimezone(TZ).date()] += 1
    assert max(cur_days.values()) <= daily


async def test_a_doctor_who_opts_out_after_queueing_receives_nothing(sandbox_app: App) -> None:
    app = sandbox_app
    await seed_medicos(app, 5)
    c = await envio.criar(app, nova(ritmo=600), actor=OP)
    assert (await envio.enviar(app, c.id, actor=OP))["enqueued"] == 5
    await medicos.optout(app, phone(2), motivo="pare", actor=OP)
    assert isinstance(app.clock, FrozenClock)
    app.clock.advance(hours=1)
    batch = await queue.claim(app, "w1", 100)
    report = await send.process_batch(app, "w1", batch)
    assert (report.sent, report.blocked) == (4, 1)
    numbers = {m["number"] for m in sandbox(app, "/_sandbox/messages")}
    assert phone(2)[1:] not in numbers and len(numbers) == 4
    s = await campanha_status.status(app, c.id)
    assert (s["sent"], s["opted_out"], s["blocked"], s["queued"]) == (4, 1, 1, 0)
    assert s["blocked_by_reason"] == {"optout": 1}


async def test_messages_claimed_before_a_pause_wait_and_before_a_cancel_end_cancelled(
    sandbox_app: App,
) -> None:
    app = sandbox_app
    assert isinstance(app.clock, FrozenClock)
    ids = await seed_medicos(app, 10)
    async with app.pool.connection() as conn:  # two segments: tag a (5) and tag b (5)
        await conn.execute("UPDATE medicos SET tags = CASE WHEN id = ANY(%s) THEN"
                           " '{a}'::text[] ELSE '{b}' END", (ids[:5],))  # fmt: skip
    p = await envio.criar(app, nova(ritmo=600, segmento=Segmento(tags=["a"])), actor=OP)
    await envio.enviar(app, p.id, actor=OP)
    app.clock.advance(hours=1)
    batch = await queue.claim(app, "w1", 100)  # claimed, then the campaign is paused
    assert len(batch) == 5
    assert (await envio.pausar(app, p.id, actor=OP))["held"] == 0
    report = await send.process_batch(app, "w1", batch)
    assert (report.sent, report.blocked) == (0, 0)
    assert sandbox(app, "/_sandbox/messages") == []
    q = "SELECT count(*) FROM fila_mensagens WHERE campanha_id = %s"
    parked = q + " AND status = 'pendente' AND agendar_para = 'infinity' AND tentativas = 0"
    assert await count(app, parked, p.id) == 5
    app.clock.advance(hours=1)
    assert await queue.claim(app, "w1", 100) == []  # still paused: never due
    assert (await envio.retomar(app, p.id, actor=OP))["rescheduled"] == 5
    app.clock.advance(hours=1)
    report = await send.process_batch(app, "w1", await queue.claim(app, "w1", 100))
    assert report.sent == 5 and len(sandbox(app, "/_sandbox/messages")) == 5

    c = await envio.criar(app, nova(ritmo=600, segmento=Segmento(tags=["b"])), actor=OP)
    await envio.enviar(app, c.id, actor=OP)
    app.clock.advance(hours=1)
    batch = await queue.claim(app, "w1", 100)
    assert {m.campanha_id for m in batch} == {c.id} and len(batch) == 5
    assert (await envio.cancelar(app, c.id, actor=OP))["cancelled"] == 0
    report = await send.process_batch(app, "w1", batch)
    assert report.sent == 0 and len(sandbox(app, "/_sandbox/messages")) == 5
    cancelled = q + " AND status = 'cancelada' AND outcome = 'CANCELLED'"
    assert await count(app, cancelled, c.id) == 5
    s = await campanha_status.status(app, c.id)
    assert (s["cancelled"], s["queued"], s["sent"]) == (5, 0, 0)


async def test_pace_over_a_compressed_clock_stays_under_the_pace_and_inside_the_window(
    sandbox_app: App,
) -> None:
    app = sandbox_app
    clock = app.clock
    assert isinstance(clock, FrozenClock)
    clock.set(datetime(2026, 1, 5, 11, 0, tzinfo=UTC))  # Monday 08:00 in São Paulo
    await seed_medicos(app, 40)
    c = await envio.criar(app, nova(ritmo=12, janela="seg-sex 09:00-11:00"), actor=OP)
    assert (await envio.enviar(app, c.id, actor=OP, rng=random.Random(7)))["enqueued"] == 40
    for _ in range(200):  # jump to each due time, as a worker would find it
        async with app.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT min(proxima_tentativa_em) AS at FROM fila_mensagens"
                " WHERE status = 'pendente'"
            )
            nxt = (await cur.fetchone() or {}).get("at")
        if nxt is None:
            break
        clock.set(max(clock.now(), nxt))
        await send.process_batch(app, "w1", await queue.claim(app, "w1", 100))
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT enviada_em FROM fila_mensagens WHERE campanha_id = %s AND status = 'enviada'",
            (c.id,),
        )
        sent = [r["enviada_em"].astimezone(TZ) for r in await cur.fetchall()]
    assert len(sent) == 40
    assert all(s.weekday() < 5 and 9 <= s.hour < 11 for s in sent)
    per_hour = Counter(s.replace(minute=0, second=0, microsecond=0) for s in sent)
    assert max(per_hour.values()) <= 12 and len(per_hour) == 4  # 12+12 Monday, 12+4 Tuesday


async def test_a_chip_restricted_mid_campaign_pauses_it_with_an_alert(app: App) -> None:
    chip = await pool.add(app, instance="c1", telefone="+5511988887777", trust_score=90,
                          status="active")  # fmt: skip
    await seed_medicos(app, 20)
    c = await envio.criar(app, nova(), actor=OP)
    r = await envio.enviar(app, c.id, actor=OP)
    assert r["enqueued"] == 20 and r["capacity"]["chips"] == 1
    now = app.clock.now()
    async with app.pool.connection() as conn:
        await conn.execute(
            "UPDATE fila_mensagens SET status = 'enviada', outcome = 'SENT', enviada_em = %s,"
            " chip_id = %s WHERE id = (SELECT min(id) FROM fila_mensagens WHERE campanha_id = %s)",
            (now, chip.id, c.id),
        )
    assert (await monitor.tick(app)).paused == []
    assert isinstance(app.clock, FrozenClock)
    app.clock.advance(minutes=5)
    async with app.pool.connection() as conn:  # what chips.sending records on a 403
        await conn.execute("UPDATE chips SET restricao_em = %s WHERE id = %s",
                           (app.clock.now(), chip.id))  # fmt: skip
    report = await monitor.tick(app)
    assert report.paused == [c.id]
    got = await store.get(app, c.id)
    assert got.status == "pausada" and "restricted" in (got.status_motivo or "")
    assert await count(app, "SELECT count(*) FROM alerts WHERE kind = 'campanha.auto_paused'") == 1
    held = "SELECT count(*) FROM fila_mensagens WHERE campanha_id = %s AND status = 'pendente'"
    assert await count(app, held + " AND proxima_tentativa_em = 'infinity'", c.id) == 19
    with pytest.raises(Conflict):
        await envio.enviar(app, c.id, actor=OP)
    app.clock.advance(days=3)  # a long pause: nothing expires
    assert await queue.expire(app) == 0
    resumed = await envio.retomar(app, c.id, actor=OP, motivo="chip replaced")
    assert resumed["rescheduled"] == 19
    assert await count(app, held + " AND proxima_tentativa_em < 'infinity'", c.id) == 19
    who = [(t["de"], t["para"], t["operador"]) for t in await store.transitions(app, c.id)]
    assert who == [
        ("-", "rascunho", "tester"),
        ("rascunho", "enviando", "tester"),
        ("enviando", "pausada", "automation"),
        ("pausada", "enviando", "tester"),
    ]


async def test_opt_outs_above_the_threshold_pause_the_campaign(app: App) -> None:
    ids = await seed_medicos(app, 40)
    c = await envio.criar(app, nova(), actor=OP)
    await envio.enviar(app, c.id, actor=OP)
    now = app.clock.now()
    async with app.pool.connection() as conn:
        await conn.execute(
            "UPDATE fila_mensagens SET status = 'enviada', outcome = 'SENT', enviada_em = %s"
            " WHERE campanha_id = %s AND medico_id = ANY(%s)",
            (now, c.id, ids[:30]),
        )
        await conn.execute(
            "UPDATE medicos SET opted_out = true, opted_out_em = %s WHERE id = %s",
            (now + timedelta(minutes=1), ids[0]),
        )
    assert (await monitor.tick(app)).paused == [c.id]  # 1/30 = 3.3 % > 2 %
    assert "opt-outs 1/30" in ((await store.get(app, c.id)).status_motivo or "")


async def test_cancel_makes_queued_messages_visible_as_cancelled(app: App) -> None:
    await seed_medicos(app, 10)
    c = await envio.criar(app, nova(), actor=OP)
    await envio.enviar(app, c.id, actor=OP)
    r = await envio.cancelar(app, c.id, actor=OP, motivo="wrong text")
    assert r["cancelled"] == 10
    s = await campanha_status.status(app, c.id)
    assert (s["status"], s["cancelled"], s["queued"]) == ("cancelada", 10, 0)
    m = (await queue.list_messages(app, status="cancelada"))[0]
    assert m.outcome == "CANCELLED" and "wrong text" in (m.motivo or "")


async def test_a_placeholder_a_recipient_lacks_is_an_error_and_nothing_is_written(
    app: App,
) -> None:
    await seed_medicos(app, 3, cidade=None)
    with pytest.raises(InvalidInput, match=r"3 recipient\(s\) have no value for \{cidade\}"):
        await envio.criar(app, nova(), actor=OP)
    assert await count(app, "SELECT count(*) FROM campanhas") == 0


async def test_the_scheduler_job_starts_a_scheduled_campaign_and_alerts_when_stalled(
    app: App,
) -> None:
    await seed_medicos(app, 5)
    start = app.clock.now().astimezone(TZ) + timedelta(hours=1)
    c = await envio.criar(app, nova(inicio=start.strftime("%Y-%m-%dT%H:%M"), ritmo=60),
                          actor=OP)  # fmt: skip
    assert c.status == "agendada"
    assert (await monitor.tick(app)).started == []  # not yet in its window
    assert isinstance(app.clock, FrozenClock)
    app.clock.advance(hours=1, minutes=1)
    assert (await monitor.tick(app)).started == [c.id]
    assert (await store.get(app, c.id)).status == "enviando"
    app.clock.advance(hours=2)  # nothing is sending (no worker)
    assert (await monitor.tick(app)).alerts == [f"stalled:{c.id}"]
    assert await count(app, "SELECT count(*) FROM alerts WHERE kind = 'campanha.stalled'") == 1


def test_plan_never_puts_more_than_the_pace_in_an_hour_nor_more_than_a_day_holds() -> None:
    j = window.parse("seg-sex 09:00-12:00", tz="America/Sao_Paulo", default_days=[0],
                     default_start="08:00", default_end="20:00")  # fmt: skip
    since = datetime(2026, 1, 5, 12, 30, tzinfo=UTC)  # Monday 09:30 local
    slots = window.plan(100, j, since=since, per_hour=10, first_day_quota=15, day_quota=25,
                        jitter=0.3, rng=random.Random(1))  # fmt: skip
    assert len(slots) == 100 and slots == sorted(slots) and slots[0] >= since
    local = [s.astimezone(TZ) for s in slots]
    assert all(9 <= s.hour < 12 and s.weekday() < 5 for s in local)
    assert max(Counter(s.replace(minute=0, second=0, microsecond=0) for s in local).values()) <= 10
    days = Counter(s.date() for s in local)
    assert days[local[0].date()] == 15 and max(days.values()) <= 25
    ended = window.Janela(j.dias, j.inicio, j.fim, TZ, None, since + timedelta(days=1))
    # Monday 09:30-12:00, then Tuesday 09:00-09:30 (the end)
    kept = window.plan(100, ended, since=since, per_hour=10, first_day_quota=99, day_quota=99,
                       jitter=0.3)  # fmt: skip
    assert len(kept) == 25 + 5


def seed_sync(database_url: str, n: int) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO medicos (telefone, nome, uf, cidade) SELECT '+55119' || lpad(i::text, 8,"
            " '0'), 'Dr. Caio ' || i, 'SP', 'Santos' FROM generate_series(0, %s - 1) AS i",
            (n,),
        )


def count_sync(database_url: str, sql: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--texto", "Oi {apelido}"], "unknown placeholder {apelido}"),
        (["--texto", "Oi {nome}", "--uf", "RJ"], "the segment is empty"),
        (["--texto", "Oi", "--janela", "18:00-09:00"], "ends before it starts"),
        (["--texto", "Oi", "--inicio", "2026-02-10", "--fim", "2026-02-01"], "ends (--fim)"),
    ],
)
def test_bad_input_is_one_clear_line_and_nothing_is_written(
    database_url: str, cli: Any, args: list[str], says: str
) -> None:
    seed_sync(database_url, 2)
    r = cli("campanha", "criar", "--nome", "x", *args)
    assert r.exit_code != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and says in lines[0]
    assert count_sync(database_url, "SELECT count(*) FROM campanhas") == 0


def test_unknown_campaign_id_is_one_line(cli: Any) -> None:
    for cmd in ("preview", "enviar", "status", "pausar", "retomar", "cancelar"):
        r = cli("campanha", cmd, "999")
        assert r.exit_code != 0 and r.stderr.strip() == "error: no campaign with id 999", cmd


def test_cli_contract_json_keys(database_url: str, cli: Any) -> None:
    seed_sync(database_url, 4)
    r = cli("campanha", "criar", "--nome", "n", "--texto", "Oi {nome}", "--uf", "SP",
            "--ritmo", "30", "--json")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    cid = json.loads(r.stdout)["id"]
    p = json.loads(cli("campanha", "preview", str(cid), "--json").stdout)
    assert {"count", "removed", "examples"} <= set(p) and p["count"] == 4
    d = json.loads(cli("campanha", "enviar", str(cid), "--dry-run", "--json").stdout)
    assert (d["enqueued"], d["already"]) == (4, 0)
    assert count_sync(database_url, "SELECT count(*) FROM fila_mensagens") == 0
    e = json.loads(cli("campanha", "enviar", str(cid), "--json").stdout)
    assert {"enqueued", "already", "skipped"} <= set(e) and e["enqueued"] == 4
    s = json.loads(cli("campanha", "status", str(cid), "--json").stdout)
    keys = {"status", "queued", "sent", "delivered", "read", "replied", "opted_out", "blocked",
            "failed"}  # fmt: skip
    assert keys <= set(s) and (s["status"], s["queued"]) == ("enviando", 4)
    assert cli("campanha", "pausar", str(cid)).exit_code == 0
    assert cli("campanha", "retomar", str(cid)).exit_code == 0
    assert cli("campanha", "cancelar", str(cid)).exit_code == 0
    rows = json.loads(cli("campanha", "listar", "--json").stdout)
    assert rows[0]["id"] == cid and rows[0]["status"] == "cancelada"
    human = cli("campanha", "status", str(cid))
    assert "cancelled 4" in human.stdout
