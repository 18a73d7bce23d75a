"""Outbound rate limits against real Redis and Postgres: each limit, campaign weight,
business hours, give-back, overrides, exact concurrency, Redis down then Postgres down."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from julia.core import audit, local
from julia.core.app import App
from julia.core.clock import FrozenClock
from julia.core.errors import InvalidInput
from julia.resilience import ratelimit as rl
from julia.resilience._shared import redis_health
from julia.settings import Settings

MONDAY_10H_SP = datetime(2026, 1, 5, 13, 0, tzinfo=UTC)
PHONES = [f"+55119999900{i:02d}" for i in range(40)]
FIXED = random.Random(1)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(MONDAY_10H_SP)


def fixed_gap(app: App, seconds: float) -> None:
    app.settings.rate_limit_interval_min_s = seconds
    app.settings.rate_limit_interval_max_s = seconds


def pg_only(app: App) -> None:
    """Make the rate limiter skip Redis, as after a Redis error."""
    redis_health(app, "ratelimit").down_until = datetime.max.replace(tzinfo=UTC)


@pytest.mark.parametrize("backend", ["redis", "postgres"])
async def test_doctor_gets_three_proactive_per_day_then_retry_at_the_oldest_plus_24h(
    app: App, clock: FrozenClock, backend: str
) -> None:
    if backend == "postgres":
        pg_only(app)
    fixed_gap(app, 0)
    first = clock.now()
    for tipo in ("prospeccao", "followup", "prospeccao"):
        d = await rl.take(app, tipo=tipo, telefone=PHONES[0], chip_id=1)
        assert d.allowed and d.backend == backend
        clock.advance(60)
    denied = await rl.take(app, tipo="followup", telefone="(11) 99999-0000", chip_id=2)
    assert (denied.allowed, denied.limit, denied.reason) == (False, "medico_daily", "window_full")
    assert denied.retry_at == first + timedelta(days=1)
    reply = await rl.take(app, tipo="resposta", telefone=PHONES[0], chip_id=1)
    assert reply.allowed  # replies are not under the proactive limits
    clock.set(first + timedelta(days=1))
    assert (await rl.take(app, tipo="followup", telefone=PHONES[0], chip_id=2)).allowed


@pytest.mark.parametrize("backend", ["redis", "postgres"])
async def test_chip_interval_hourly_daily_and_campaign_weight(
    app: App, clock: FrozenClock, backend: str
) -> None:
    if backend == "postgres":
        pg_only(app)
    fixed_gap(app, 45)
    start = clock.now()
    ok = await rl.take(app, tipo="prospeccao", telefone=PHONES[0], chip_id=9)
    assert ok.allowed
    clock.advance(10)
    too_soon = await rl.take(app, tipo="prospeccao", telefone=PHONES[1], chip_id=9)
    assert (too_soon.limit, too_soon.reason) == ("chip_interval", "too_soon")
    assert too_soon.retry_at == start + timedelta(seconds=45)
    used = 1
    i = 2
    while True:  # campaign messages take two slots each: 1 + 2*k up to 20 per hour
        clock.advance(45)
        d = await rl.take(app, tipo="campanha", telefone=PHONES[i], chip_id=9)
        i += 1
        if not d.allowed:
            break
        used += 2
    assert used == 19 and d.limit == "chip_hourly"
    assert d.retry_at == start + timedelta(hours=1)
    one = await rl.take(app, tipo="prospeccao", telefone=PHONES[i], chip_id=9)
    assert one.allowed  # a single slot still fits under 20
    status = await rl.status(app, chip_id=9)
    assert [(u.limit, u.used, u.left) for u in status.usage][:2] == [
        ("chip_hourly", 20, 0),
        ("chip_daily", 20, 80),
    ]


async def test_proactive_only_in_business_hours(app: App, clock: FrozenClock) -> None:
    clock.set(datetime(2026, 1, 9, 23, 30, tzinfo=UTC))  # Friday 20:30 in São Paulo
    d = await rl.take(app, tipo="prospeccao", telefone=PHONES[0], chip_id=1)
    assert (d.allowed, d.limit, d.reason) == (False, "business_hours", "outside_business_hours")
    assert d.retry_at == datetime(2026, 1, 12, 11, 0, tzinfo=UTC)  # Monday 08:00 -03
    assert (await rl.take(app, tipo="resposta", telefone=PHONES[0], chip_id=1)).allowed


async def test_burst_limit_throttles_replies_per_chip(app: App, clock: FrozenClock) -> None:
    app.settings.rate_limit_chip_burst = 3
    for i in range(3):
        assert (await rl.take(app, tipo="resposta", telefone=PHONES[i], chip_id=5)).allowed
    d = await rl.take(app, tipo="resposta", telefone=PHONES[4], chip_id=5)
    assert (d.limit, d.retry_at) == ("chip_burst", clock.now() + timedelta(seconds=60))
    assert (await rl.take(app, tipo="resposta", telefone=PHONES[4], chip_id=6)).allowed


async def test_give_back_frees_the_slots_and_the_interval(app: App, clock: FrozenClock) -> None:
    fixed_gap(app, 100)
    for _ in range(2):
        d = await rl.take(app, tipo="campanha", telefone=PHONES[0], chip_id=3)
        assert d.allowed
        await rl.give_back(app, d.ticket)
    st = await rl.status(app, telefone=PHONES[0])
    assert st.usage[0].used == 0
    chip = await rl.status(app, chip_id=3)
    assert chip.next_proactive_at is None and chip.usage[0].used == 0
    async with app.pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) AS n FROM rate_limit_events")
        assert (await cur.fetchone())["n"] == 0


async def test_weight_above_the_limit_never_fits(app: App) -> None:
    app.settings.rate_limit_medico_daily = 1
    d = await rl.take(app, tipo="campanha", telefone=PHONES[0], chip_id=1)
    assert (d.allowed, d.limit, d.reason, d.retry_at) == (
        False,
        "medico_daily",
        "never_fits",
        None,
    )


async def test_bad_input_is_rejected(app: App) -> None:
    with pytest.raises(InvalidInput):
        await rl.take(app, tipo="spam", telefone=PHONES[0], chip_id=1)
    with pytest.raises(InvalidInput):
        await rl.take(app, tipo="resposta", telefone="123", chip_id=1)


async def test_disabled_allows_everything(app: App) -> None:
    app.settings.rate_limits_enabled = False
    for _ in range(10):
        d = await rl.take(app, tipo="campanha", telefone=PHONES[0], chip_id=1)
        assert d.allowed and d.backend == "disabled"


@pytest.mark.parametrize("backend", ["redis", "postgres"])
async def test_100_concurrent_attempts_against_a_limit_of_3_allow_exactly_3(
    app: App, backend: str
) -> None:
    if backend == "postgres":
        pg_only(app)
    fixed_gap(app, 0)
    decisions = await asyncio.gather(
        *(rl.take(app, tipo="prospeccao", telefone=PHONES[0], chip_id=i % 7) for i in range(100))
    )
    assert sum(d.allowed for d in decisions) == 3
    assert {d.limit for d in decisions if not d.allowed} == {"medico_daily"}
    assert {d.backend for d in decisions} == {backend}


async def test_override_lifts_the_doctor_limit_until_ate_and_is_audited(
    app: App, clock: FrozenClock
) -> None:
    fixed_gap(app, 0)
    for _ in range(3):
        assert (await rl.take(app, tipo="prospeccao", telefone=PHONES[0], chip_id=1)).allowed
    assert not (await rl.take(app, tipo="prospeccao", telefone=PHONES[0], chip_id=1)).allowed
    ate = clock.now() + timedelta(hours=2)
    ov = await rl.override(app, "11 99999-0000", "médico pediu contato", audit.Actor("ana"), ate)
    assert (ov.telefone, ov.operador, ov.ate) == (PHONES[0], "ana", ate)
    assert (await rl.take(app, tipo="prospeccao", telefone=PHONES[0], chip_id=1)).allowed
    st = await rl.status(app, telefone=PHONES[0])
    assert st.override is not None and st.usage[0].used == 4
    # The Redis flag is only a cache: lost, it is restored from Postgres.
    await app.redis.delete(app.keys.key("rl", "override", PHONES[0]))
    assert (await rl.take(app, tipo="prospeccao", telefone=PHONES[0], chip_id=1)).allowed
    clock.advance(hours=2)
    await app.redis.delete(app.keys.key("rl", "override", PHONES[0]))  # TTL is real time
    assert not (await rl.take(app, tipo="prospeccao", telefone=PHONES[0], chip_id=1)).allowed
    [row] = await audit.recent(app, acao="ratelimit.override")
    assert (row["operador"], row["motivo"], row["alvo"]) == (
        "ana",
        "médico pediu contato",
        PHONES[0],
    )
    with pytest.raises(InvalidInput):
        await rl.override(app, PHONES[0], "x", audit.Actor("ana"), clock.now() - timedelta(1))
    with pytest.raises(InvalidInput):
        await rl.override(app, PHONES[0], "  ", audit.Actor("ana"))


async def test_redis_down_counts_from_postgres_then_postgres_down_fails_closed(
    settings: Settings, clock: FrozenClock, tmp_path: Path
) -> None:
    home = tmp_path / "own-redis"
    own = settings.model_copy(
        update={
            "redis_url": SecretStr(local.ensure_redis(home)),
            "rate_limit_interval_min_s": 0.0,
            "rate_limit_interval_max_s": 0.0,
        }
    )
    try:
        async with App.open(own, clock=clock) as app:
            first = await rl.take(app, tipo="prospeccao", telefone=PHONES[0], chip_id=1)
            assert first.allowed and first.backend == "redis"
            local.stop_redis(home)
            clock.advance(60)
            # What Redis granted is counted from Postgres: two more, then the limit.
            got = [await rl.take(app, tipo="followup", telefone=PHONES[0], chip_id=2)]
            clock.advance(60)
            got.append(await rl.take(app, tipo="followup", telefone=PHONES[0], chip_id=2))
            clock.advance(60)
            got.append(await rl.take(app, tipo="followup", telefone=PHONES[0], chip_id=2))
            assert [(d.allowed, d.backend) for d in got] == [
                (True, "postgres"),
                (True, "postgres"),
                (False, "postgres"),
            ]
            assert got[2].limit == "medico_daily"
            assert got[2].retry_at == first_at(clock, 180) + timedelta(days=1)
            await app.pool.close()  # Postgres unreachable too
            closed = await rl.take(app, tipo="resposta", telefone=PHONES[1], chip_id=3)
            assert (closed.allowed, closed.limit, closed.reason, closed.backend) == (
                False,
                "storage",
                "storage_unavailable",
                "none",
            )
            assert closed.retry_at == clock.now() + timedelta(seconds=60)
    finally:
        local.stop_redis(home)


def first_at(clock: FrozenClock, seconds_ago: float) -> datetime:
    return clock.now() - timedelta(seconds=seconds_ago)


async def test_redis_is_refilled_from_postgres_after_an_outage(
    app: App, clock: FrozenClock
) -> None:
    fixed_gap(app, 0)
    pg_only(app)
    for _ in range(3):
        assert (await rl.take(app, tipo="prospeccao", telefone=PHONES[0], chip_id=1)).backend == (
            "postgres"
        )
    redis_health(app, "ratelimit").down_until = clock.now()  # Redis is tried again
    again = await rl.take(app, tipo="prospeccao", telefone=PHONES[0], chip_id=1)
    assert (again.allowed, again.backend, again.limit) == (False, "redis", "medico_daily")
    assert redis_health(app, "ratelimit").down_until is None
    st = await rl.status(app, chip_id=1)
    assert (st.backend, st.usage[1].used) == ("redis", 3)


async def test_postgres_down_with_redis_up_still_decides_in_redis(app: App) -> None:
    fixed_gap(app, 0)
    await rl.refill_redis(app, everything=True)  # Redis's state is known (the marker is set)
    await app.pool.close()
    got = [await rl.take(app, tipo="prospeccao", telefone=PHONES[0], chip_id=1) for _ in range(4)]
    assert [d.allowed for d in got] == [True, True, True, False]
    assert got[3].limit == "medico_daily"  # no override can be read: the limit stands


async def test_a_lost_redis_with_postgres_down_grants_nothing(app: App) -> None:
    """Redis without its marker cannot be trusted, and Postgres cannot refill it: closed."""
    await app.pool.close()
    d = await rl.take(app, tipo="prospeccao", telefone=PHONES[0], chip_id=1)
    assert (d.allowed, d.limit, d.reason) == (False, "storage", "storage_unavailable")


async def test_prune_events_drops_old_rows(app: App, clock: FrozenClock) -> None:
    await rl.take(app, tipo="resposta", telefone=PHONES[0], chip_id=1)
    clock.advance(hours=49)
    assert await rl.prune_events(app) == 1


async def _lose_redis_state(app: App) -> None:
    """What FLUSHALL or a Redis restarted without its data does (to this namespace only)."""
    keys = [k async for k in app.redis.scan_iter(match=app.keys.pattern())]
    if keys:
        await app.redis.delete(*keys)


async def test_a_redis_that_lost_its_data_is_refilled_before_it_decides(
    app: App, clock: FrozenClock
) -> None:
    fixed_gap(app, 0)
    for _ in range(3):
        d = await rl.take(app, tipo="prospeccao", telefone=PHONES[0], chip_id=1)
        assert d.allowed and d.backend == "redis"
        clock.advance(60)
    await _lose_redis_state(app)  # Redis never went down: only the marker tells
    for _ in range(3):
        d = await rl.take(app, tipo="prospeccao", telefone=PHONES[0], chip_id=1)
        assert (d.allowed, d.backend, d.limit) == (False, "redis", "medico_daily")


async def test_the_burst_limit_holds_across_a_lost_redis(app: App, clock: FrozenClock) -> None:
    app.settings.rate_limit_chip_burst = 5
    for _ in range(5):
        assert (await rl.take(app, tipo="resposta", telefone=PHONES[1], chip_id=7)).allowed
    await _lose_redis_state(app)
    over = await asyncio.gather(
        *(rl.take(app, tipo="resposta", telefone=PHONES[1], chip_id=7) for _ in range(5))
    )
    assert [d.limit for d in over] == ["chip_burst"] * 5


def _ranked(tipo: str, phone: str, *chips: str) -> rl.RankedTake:
    return rl.RankedTake(tipo, phone, [(c, (0, 0, 0, n)) for n, c in enumerate(chips)])


async def test_a_ranked_batch_takes_in_one_call_what_takes_one_by_one_would(
    app: App, clock: FrozenClock
) -> None:
    """Burst of 2 per chip: the batch spreads by use, spills to the next chip, stops at the
    doctor's limit, and gives back exactly; then single takes see the same windows."""
    fixed_gap(app, 0)
    app.settings.rate_limit_chip_burst = 2
    takes = [_ranked("resposta", PHONES[1], "a", "b") for _ in range(5)]
    takes += [_ranked("prospeccao", PHONES[0], "a", "b", "c") for _ in range(4)]
    got = await rl.take_ranked(app, takes, {"a": (0, 99, 99), "b": (0, 99, 99), "c": (5, 99, 99)})
    tried = [[(chip, d.allowed, d.limit) for chip, d in attempts or []] for attempts in got]
    assert tried[:5] == [
        [("a", True, None)], [("b", True, None)], [("a", True, None)], [("b", True, None)],
        [("a", False, "chip_burst"), ("b", False, "chip_burst")],
    ]  # fmt: skip
    assert tried[5:] == [  # a and b are full: c, until its burst is full too
        [("a", False, "chip_burst"), ("b", False, "chip_burst"), ("c", True, None)],
        [("a", False, "chip_burst"), ("b", False, "chip_burst"), ("c", True, None)],
        [("a", False, "chip_burst"), ("b", False, "chip_burst"), ("c", False, "chip_burst")],
        [("a", False, "chip_burst"), ("b", False, "chip_burst"), ("c", False, "chip_burst")],
    ]  # fmt: skip
    tickets = [d.ticket for attempts in got for _, d in attempts or [] if d.allowed]
    async with app.pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) AS n FROM rate_limit_events")
        assert (await cur.fetchone())["n"] == len(tickets) == 6  # type: ignore[index]
    for t in tickets:
        await rl.give_back(app, t)
    for chip in ("a", "b"):  # every slot back: the single take finds the windows empty
        assert (await rl.take(app, tipo="resposta", telefone=PHONES[1], chip_id=chip)).allowed
        assert (await rl.status(app, chip_id=chip)).usage[2].used == 1


async def test_a_ranked_batch_refills_a_redis_that_lost_its_data(
    app: App, clock: FrozenClock
) -> None:
    fixed_gap(app, 0)
    for _ in range(3):
        assert (await rl.take(app, tipo="prospeccao", telefone=PHONES[0], chip_id=1)).allowed
        clock.advance(60)
    await _lose_redis_state(app)  # the marker is gone: refilled from Postgres, then decided
    (attempts,) = await rl.take_ranked(app, [_ranked("prospeccao", PHONES[0], "1", "2")],
                                       {"1": (0, 99, 99), "2": (0, 99, 99)})  # fmt: skip
    assert [(c, d.allowed, d.limit) for c, d in attempts or []] == [("1", False, "medico_daily")]
    assert await app.redis.exists(app.keys.key("rl", "state"))
