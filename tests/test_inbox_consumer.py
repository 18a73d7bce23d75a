"""The inbox consumer: debounce into turns, once, in order per doctor, retries and parking."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from julia import inbox
from julia.core.app import App
from julia.core.clock import FrozenClock
from julia.inbox import consumer
from julia.inbox.processors import Step, TurnContext, default_processors, proceed
from julia.notify import alerts
from julia.settings import Settings

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TEXT = json.loads((FIXTURES / "evolution_messages_upsert_text.json").read_text())
_seq = iter(range(1, 10**6))


def upsert(text: str, number: str = "5511987654321", **key: Any) -> dict[str, Any]:
    """A recorded-shape messages.upsert from ``number`` with a fresh message id."""
    body = copy.deepcopy(TEXT)
    body["data"]["key"] = {
        "remoteJid": f"{number}@s.whatsapp.net",
        "fromMe": False,
        "id": f"MSG{next(_seq):08d}",
    } | key
    body["data"]["message"] = {"conversation": text}
    return body


async def post(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    r = await client.post("/webhooks/evolution", json=body)
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


async def turns(app: App) -> list[dict[str, Any]]:
    async with app.pool.connection() as conn:
        cur = await conn.execute("SELECT * FROM inbox_turnos ORDER BY id")
        return list(await cur.fetchall())


async def test_three_messages_1s_apart_become_one_turn(
    client: httpx.AsyncClient, app: App, clock: FrozenClock
) -> None:
    for i, text in enumerate(["oi", "tudo bem?", "tem plantão sábado?"]):
        if i:
            clock.advance(1)
        await post(client, upsert(text))
    assert await consumer.step(app, "w1") is None  # the burst is still going
    clock.advance(3.9)
    assert await consumer.step(app, "w1") is None  # 3.9 s of quiet < 4 s
    clock.advance(0.2)
    turn = await consumer.step(app, "w1")
    assert turn is not None and len(turn.mensagens) == 3
    [t] = await turns(app)
    assert t["texto"] == "oi\ntudo bem?\ntem plantão sábado?"
    assert t["status"] == "aguardando_resposta" and t["parado_por"] is None
    assert t["processors"][-1] == "agent"
    rows = await inbox.list_inbox(app)
    assert {r.status for r in rows} == {"processada"} and {r.turno_id for r in rows} == {t["id"]}
    async with app.pool.connection() as conn:
        cur = await conn.execute("SELECT nome, tags FROM medicos WHERE telefone = '+5511987654321'")
        assert await cur.fetchone() == {"nome": "Mayssa Ferreira", "tags": ["lead"]}
        cur = await conn.execute("SELECT count(*) AS n FROM interacoes WHERE direcao = 'entrada'")
        assert (await cur.fetchone())["n"] == 3
    assert await consumer.step(app, "w1") is None


async def test_a_burst_that_never_pauses_is_cut_at_15_s(
    client: httpx.AsyncClient, app: App, clock: FrozenClock
) -> None:
    made = None
    for i in range(10):
        await post(client, upsert(f"msg {i}"))
        made = await consumer.step(app, "w1")
        if made:
            break
        clock.advance(3)
    assert made is not None
    assert len(made.mensagens) == 6  # sent at 0, 3, ..., 15 s: the 15 s mark closes the turn


async def test_100_concurrent_posts_are_processed_once(
    client: httpx.AsyncClient, app: App, clock: FrozenClock, settings: Settings
) -> None:
    body = upsert("oi")
    answers = await asyncio.gather(*(post(client, body) for _ in range(100)))
    assert [a["status"] for a in answers].count("accepted") == 1
    clock.advance(5)
    async with (
        App.open(settings, clock=clock) as other1,
        App.open(settings, clock=clock) as other2,
    ):  # three "processes", several steps each, all at once
        results = await asyncio.gather(
            *(consumer.step(a, f"w{i}") for i, a in enumerate([app, other1, other2] * 4))
        )
    assert len([r for r in results if r is not None]) == 1
    assert len(await turns(app)) == 1
    async with app.pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) AS n FROM interacoes")
        assert (await cur.fetchone())["n"] == 1


class Recorder:
    """Priority 1: records turns; turns of ``hold`` wait for ``release`` (a slow LLM)."""

    name, priority = "recorder", 1

    def __init__(self, hold: str | None = None) -> None:
        self.hold = hold
        self.release = asyncio.Event()
        self.holding = asyncio.Event()
        self.seen: list[tuple[str, list[str]]] = []
        self.active: dict[str, int] = {}
        self.max_active: dict[str, int] = {}
        self.done = asyncio.Event()

    async def process(self, app: App, ctx: TurnContext) -> Step:
        key = ctx.conversa_key
        self.active[key] = self.active.get(key, 0) + 1
        self.max_active[key] = max(self.max_active.get(key, 0), self.active[key])
        self.seen.append((key, [m.texto or "" for m in ctx.mensagens]))
        try:
            if key == self.hold:
                self.holding.set()
                await self.release.wait()
            return proceed(ctx)
        finally:
            self.active[key] -= 1
            self.done.set()


async def wait_for(event: asyncio.Event) -> None:
    await asyncio.wait_for(event.wait(), timeout=20)
    event.clear()


async def test_two_doctors_in_parallel_one_doctor_in_order(
    client: httpx.AsyncClient, app: App, clock: FrozenClock, settings: Settings
) -> None:
    a, b = "+5511911110001", "+5511922220002"
    recorder = Recorder(hold=a)
    procs = [recorder, *default_processors()]
    app.settings = settings.model_copy(update={"inbox_poll_s": 0.01})
    stop = asyncio.Event()
    async with App.open(app.settings, clock=clock) as other:  # a second "process"
        workers = [
            asyncio.create_task(consumer.run(app, stop, "w-a", processors=procs, concurrency=2)),
            asyncio.create_task(consumer.run(other, stop, "w-b", processors=procs, concurrency=2)),
        ]
        try:
            await post(client, upsert("A1", a[1:]))
            clock.advance(5)
            await wait_for(recorder.holding)  # doctor A's first turn is in progress...
            await post(client, upsert("A2", a[1:]))
            await post(client, upsert("B1", b[1:]))
            clock.advance(5)
            while (b, ["B1"]) not in recorder.seen:  # ...and doctor B is served meanwhile
                await wait_for(recorder.done)
            assert [s for s in recorder.seen if s[0] == a] == [(a, ["A1"])]
            recorder.release.set()
            while (a, ["A2"]) not in recorder.seen:
                await wait_for(recorder.done)
        finally:
            stop.set()  # a step in progress finishes before its loop exits
            await asyncio.gather(*workers)
    assert [s for s in recorder.seen if s[0] == a] == [(a, ["A1"]), (a, ["A2"])]
    assert recorder.max_active == {a: 1, b: 1}
    by_key = [(t["conversa_key"], t["texto"]) for t in await turns(app)]
    assert by_key.index((a, "A1")) < by_key.index((a, "A2"))


class Boom:
    name, priority = "boom", 12

    def __init__(self) -> None:
        self.calls = 0

    async def process(self, app: App, ctx: TurnContext) -> Step:
        self.calls += 1
        raise RuntimeError("LLM exploded")


async def test_failing_turn_is_retried_with_backoff_then_parked(
    client: httpx.AsyncClient, app: App, clock: FrozenClock, settings: Settings
) -> None:
    app.settings = settings.model_copy(update={"inbox_max_attempts": 3})
    boom = Boom()
    procs = [boom, *default_processors()]
    [mid] = (await post(client, upsert("oi")))["ids"]
    clock.advance(5)
    first = await consumer.step(app, "w1", procs)
    assert first is not None and first.erro == "RuntimeError: LLM exploded" and not first.parked
    row = await inbox.get(app, mid)
    assert row["status"] == "pendente" and row["attempts"] == 1
    assert row["next_attempt_at"] == clock.now() + consumer_delay(app, 1)
    # A later message of the same doctor waits behind the failing one (order holds).
    await post(client, upsert("segunda"))
    clock.advance(4.5)
    assert await consumer.step(app, "w1", procs) is None  # backoff of 5 s not over
    clock.advance(1)
    second = await consumer.step(app, "w1", procs)
    assert second is not None and second.mensagens[0] == mid and len(second.mensagens) == 2
    clock.advance(consumer_delay(app, 2).total_seconds())
    third = await consumer.step(app, "w1", procs)
    assert third is not None and third.parked
    parked = await inbox.list_inbox(app, status="erro")
    assert [r.id for r in parked][-1] == mid and parked[
        0
    ].last_error == "RuntimeError: LLM exploded"
    assert boom.calls == 3 and await turns(app) == []
    [alert] = await alerts.list_alerts(app, kind="inbox.parked")
    assert alert.details["ids"] == [mid, mid + 1] and "julia inbox replay" in alert.message
    # The operator replays it; with the processor fixed it goes through.
    await inbox.replay(app, mid)
    assert (await inbox.get(app, mid))["status"] == "pendente"
    turn = await consumer.step(app, "w1")
    assert turn is not None and turn.mensagens == (mid,)
    assert (await inbox.get(app, mid))["status"] == "processada"


def consumer_delay(app: App, attempt: int) -> Any:
    from datetime import timedelta

    return timedelta(seconds=consumer.backoff_s(app, attempt))


async def test_a_dead_workers_lease_expires(
    client: httpx.AsyncClient, app: App, clock: FrozenClock
) -> None:
    await post(client, upsert("oi"))
    clock.advance(5)
    assert await consumer.claim(app, "dead-worker") is not None
    assert await consumer.step(app, "w2") is None  # leased by the dead worker
    clock.advance(app.settings.inbox_lease_s + 1)
    assert await consumer.step(app, "w2") is not None


async def test_a_long_turn_keeps_its_lease(
    client: httpx.AsyncClient, app: App, clock: FrozenClock, settings: Settings
) -> None:
    app.settings = settings.model_copy(update={"inbox_lease_s": 0.3})
    recorder = Recorder(hold="+5511987654321")
    await post(client, upsert("oi"))
    clock.advance(5)
    turn = asyncio.create_task(consumer.step(app, "slow", [recorder, *default_processors()]))
    await wait_for(recorder.holding)

    async def expires_at() -> Any:
        async with app.pool.connection() as conn:
            cur = await conn.execute("SELECT expires_at FROM inbox_leases")
            return (await cur.fetchone())["expires_at"]

    first = await expires_at()
    clock.advance(0.2)
    while await expires_at() == first:  # noqa: ASYNC110 (a DB row: no event to await)
        await asyncio.sleep(0.02)
    clock.advance(0.2)  # past the first expiry, not the renewed one
    assert await consumer.claim(app, "other") is None
    recorder.release.set()
    done = await turn
    assert done is not None and done.status == "aguardando_resposta"


async def test_a_turn_whose_lease_was_taken_over_writes_nothing(
    client: httpx.AsyncClient, app: App, clock: FrozenClock
) -> None:
    recorder = Recorder(hold="+5511987654321")
    [mid] = (await post(client, upsert("oi")))["ids"]
    clock.advance(5)
    turn = asyncio.create_task(consumer.step(app, "slow", [recorder, *default_processors()]))
    await wait_for(recorder.holding)
    async with app.pool.connection() as conn:  # another consumer took the conversation
        await conn.execute("UPDATE inbox_leases SET worker_id = 'other'")
    recorder.release.set()
    with pytest.raises(consumer._LeaseLost):
        await turn
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT (SELECT count(*) FROM inbox_turnos) AS turnos,"
            " (SELECT count(*) FROM interacoes) AS interacoes,"
            " (SELECT worker_id FROM inbox_leases) AS lease"
        )
        row = await cur.fetchone()
    assert row == {"turnos": 0, "interacoes": 0, "lease": "other"}
    assert (await inbox.get(app, mid))["status"] == "pendente"


async def test_the_rescue_frees_dead_leases_and_alerts_once_on_stalled_messages(
    client: httpx.AsyncClient, app: App, clock: FrozenClock
) -> None:
    await post(client, upsert("oi"))
    clock.advance(5)
    assert await consumer.claim(app, "dead-worker") is not None
    assert await consumer.rescue(app) == consumer.Rescue(0, 0, None)  # lease alive, too soon
    clock.advance(app.settings.inbox_lease_s + 1)
    freed = await consumer.rescue(app)
    assert freed.leases_freed == 1 and freed.stuck == 0
    # nobody consumes the inbox: past JULIA_ALERT_INBOX_STUCK_MIN it is an alert, once
    clock.advance(app.settings.alert_inbox_stuck_min * 60)
    stalled = await consumer.rescue(app)
    assert (stalled.leases_freed, stalled.stuck) == (0, 1) and stalled.oldest_min >= 10
    await post(client, upsert("alô?", number="5511911112222"))
    clock.advance(app.settings.alert_inbox_stuck_min * 60)
    assert (await consumer.rescue(app)).stuck == 2
    [alert] = await alerts.list_alerts(app, kind="inbox.stalled")
    assert alert.repeats == 1 and alert.severity == "critical"
    # a consumer runs again: the messages become turns and nothing is stuck
    while await consumer.step(app, "w1") is not None:
        pass
    assert (await consumer.rescue(app)).stuck == 0


async def test_messages_backing_off_after_a_failure_are_not_stalled(
    client: httpx.AsyncClient, app: App, clock: FrozenClock, settings: Settings
) -> None:
    app.settings = settings.model_copy(
        update={"inbox_retry_base_s": 3600.0, "inbox_retry_max_s": 3600.0}
    )
    await post(client, upsert("oi"))
    clock.advance(5)
    failed = await consumer.step(app, "w1", [Boom(), *default_processors()])
    assert failed is not None and failed.erro and not failed.parked
    clock.advance(app.settings.alert_inbox_stuck_min * 60 + 1)
    assert (await consumer.rescue(app)).stuck == 0
    assert await alerts.list_alerts(app, kind="inbox.stalled") == []
