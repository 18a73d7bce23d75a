"""Property-based: random sequences of takes (all message types, two doctors, two chips),
give-backs and clock moves drive the rate limiter (Redis Lua, and the Postgres fallback)
and a brute-force reference model; decisions and retry times must agree."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from julia.core.app import App
from julia.core.clock import FrozenClock
from julia.resilience import ratelimit as rl
from julia.resilience._shared import redis_health
from julia.settings import Settings

SP = ZoneInfo("America/Sao_Paulo")
PHONES = ["+5511999990001", "+5511999990002", "+5511999990003", "+5511999990004"]


@dataclass
class Event:
    at: float
    telefone: str
    chip: int
    weight: int
    proactive: bool
    gap: float
    ticket: rl.Ticket | None = None


class Recording(random.Random):
    """Remembers the gap the limiter drew, so the model knows it."""

    last = 0.0

    def uniform(self, a: float, b: float) -> float:
        self.last = round(super().uniform(a, b), 3)
        return self.last


def free_at(slots: list[float], now: float, window: float, limit: int, w: int) -> float | None:
    """Brute force: the first moment (now or when a slot leaves) the weight fits."""
    if w > limit:
        return -2.0
    for t in [now, *sorted(s + window for s in slots if s + window > now)]:
        if sum(1 for s in slots if s > t - window) + w <= limit:
            return None if t == now else t
    raise AssertionError("unreachable")


def model_decision(
    events: list[Event], now: float, tipo: str, tel: str, chip: int, clock_dt: datetime
):  # type: ignore[no-untyped-def]
    proactive = tipo != "resposta"
    if proactive:
        local = clock_dt.astimezone(SP)
        if local.weekday() >= 5 or not (8 <= local.hour < 20):
            return {"business_hours"}, "business"
    w = 2 if tipo == "campanha" else 1
    fails: dict[str, float] = {}

    def units(pred) -> list[float]:  # type: ignore[no-untyped-def]
        return [e.at for e in events if pred(e) for _ in range(e.weight)]

    if proactive:
        checks = {
            "medico_daily": free_at(
                units(lambda e: e.proactive and e.telefone == tel), now, 86400, 3, w
            ),
            "chip_daily": free_at(
                units(lambda e: e.proactive and e.chip == chip), now, 86400, 4, w
            ),
            "chip_hourly": free_at(
                units(lambda e: e.proactive and e.chip == chip), now, 3600, 3, w
            ),
        }
        fails.update({k: v for k, v in checks.items() if v is not None})
        nxt = max((e.at + e.gap for e in events if e.proactive and e.chip == chip), default=0)
        if now < nxt:
            fails["chip_interval"] = nxt
    burst = free_at([e.at for e in events if e.chip == chip], now, 60, 3, 1)
    if burst is not None:
        fails["chip_burst"] = burst
    if not fails:
        return None, None
    if -2.0 in fails.values():
        return {k for k, v in fails.items() if v == -2.0}, None
    worst = max(fails.values())
    return {k for k, v in fails.items() if v == worst}, worst


take_op = st.tuples(
    st.just("take"),
    st.sampled_from(["resposta", "prospeccao", "followup", "campanha"]),
    st.sampled_from(PHONES),
    st.sampled_from([1, 1, 1, 2]),
)
ops = st.lists(
    st.one_of(
        take_op,
        take_op,
        take_op,
        take_op,
        st.tuples(st.just("advance"), st.sampled_from([1, 10, 30, 61, 61, 61, 120, 600, 3600])),
        st.tuples(st.just("advance"), st.just(86400)),
        st.tuples(st.just("give_back"), st.integers(0, 5)),
    ),
    min_size=20,
    max_size=60,
)


@pytest.fixture
def loop_app(settings: Settings) -> Iterator[tuple[asyncio.AbstractEventLoop, App, FrozenClock]]:
    loop = asyncio.new_event_loop()
    clock = FrozenClock()
    tuned = settings.model_copy(
        update={
            "rate_limit_medico_daily": 3,
            "rate_limit_chip_hourly": 3,
            "rate_limit_chip_daily": 4,
            "rate_limit_chip_burst": 3,
            "rate_limit_chip_burst_window_s": 60.0,
            "rate_limit_interval_min_s": 5.0,
            "rate_limit_interval_max_s": 60.0,
        }
    )
    cm = App.open(tuned, clock=clock)
    app = loop.run_until_complete(cm.__aenter__())
    yield loop, app, clock
    loop.run_until_complete(cm.__aexit__(None, None, None))
    loop.close()


async def run(app: App, clock: FrozenClock, steps: list[tuple], backend: str) -> None:  # type: ignore[type-arg]
    # Each example starts on a fresh Monday 09:00 in São Paulo, far from the previous one.
    await app.redis.delete(
        *[k async for k in app.redis.scan_iter(app.keys.key("rl", "*"))] or ["-"]
    )
    async with app.pool.connection() as conn:
        await conn.execute("DELETE FROM rate_limit_events")
    clock.set(datetime(2026, 1, 5, 12, tzinfo=UTC))
    if backend == "postgres":
        redis_health(app, "ratelimit").down_until = datetime.max.replace(tzinfo=UTC)
    t0 = clock.now()
    rng = Recording(7)
    events: list[Event] = []
    for step in steps:
        now = (clock.now() - t0).total_seconds()
        if step[0] == "advance":
            clock.advance(step[1])
            continue
        if step[0] == "give_back":
            if events:
                e = events[step[1] % len(events)]
                events.remove(e)
                await rl.give_back(app, e.ticket)
            continue
        _, tipo, tel, chip = step
        limits, retry = model_decision(events, now, tipo, tel, chip, clock.now())
        d = await rl.take(app, tipo=tipo, telefone=tel, chip_id=chip, rng=rng)
        if limits is None:
            assert d.allowed, (step, d, events)
            assert d.backend == backend
            proactive = tipo != "resposta"
            w = 2 if tipo == "campanha" else 1
            events.append(
                Event(now, tel, chip, w, proactive, rng.last if proactive else 0, d.ticket)
            )
        else:
            assert not d.allowed, (step, events)
            assert d.limit in limits, (step, d, limits)
            if retry == "business":
                continue
            got = None if d.retry_at is None else (d.retry_at - t0).total_seconds()
            assert got == pytest.approx(retry, abs=0.002) if retry is not None else got is None


@pytest.mark.parametrize("backend", ["redis", "postgres"])
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(steps=ops)
def test_rate_limiter_agrees_with_the_reference_model(
    loop_app: tuple[asyncio.AbstractEventLoop, App, FrozenClock],
    backend: str,
    steps: list[tuple],  # type: ignore[type-arg]
) -> None:
    loop, app, clock = loop_app
    loop.run_until_complete(run(app, clock, steps, backend))
