"""Circuit breakers against real Redis and Postgres: opening, classification, backoff,
half-open trials, a concurrent failure burst, operator overrides, Redis/Postgres down."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from julia.core import audit, local
from julia.core.app import App
from julia.core.clock import FrozenClock
from julia.core.errors import CircuitOpen, InvalidInput, StorageError
from julia.resilience import breaker as br
from julia.resilience.breaker import BreakerConfig, breakers
from julia.settings import Settings


class GatewayFailure(Exception):
    """Stands for the gateways' typed errors: classified by attributes only."""

    def __init__(self, status_code: int | None = None, kind: str | None = None) -> None:
        super().__init__(f"status={status_code} kind={kind}")
        self.status_code = status_code
        self.kind = kind


async def fail_with(b: br.Breaker, exc: BaseException) -> None:
    with pytest.raises(type(exc)):
        async with b.guard():
            raise exc


async def transitions(app: App, name: str) -> list[tuple[str, str, str]]:
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT from_state, to_state, reason FROM circuit_transitions WHERE name = %s"
            " ORDER BY id",
            (name,),
        )
        return [(r["from_state"], r["to_state"], r["reason"]) for r in await cur.fetchall()]


CFG = BreakerConfig(failure_threshold=3, failure_rate=0, open_base_s=60, open_max_s=600)


async def test_opens_after_consecutive_failures_and_refuses_with_retry_at(
    app: App, clock: FrozenClock
) -> None:
    b = breakers(app).get("evolution", config=CFG)
    for _ in range(2):
        await fail_with(b, httpx.ConnectError("refused"))
    assert (await b.status()).state == "closed"
    await fail_with(b, GatewayFailure(503))
    with pytest.raises(CircuitOpen) as refused:
        await b.call(asyncio.sleep, 0)
    assert refused.value.name == "evolution"
    assert refused.value.retry_at == clock.now() + timedelta(seconds=60)
    st = await b.status()
    assert (st.state, st.consecutive_failures, st.last_error) == ("open", 3, "http_503")
    assert await transitions(app, "evolution") == [("closed", "open", "consecutive_failures")]


async def test_a_success_resets_the_consecutive_count(app: App) -> None:
    b = breakers(app).get("anthropic", config=CFG)
    for _ in range(5):
        await fail_with(b, httpx.ConnectError("x"))
        await fail_with(b, httpx.ConnectError("x"))
        assert await b.call(asyncio.sleep, 0, "ok") == "ok"
    assert (await b.status()).state == "closed"


async def test_timeouts_and_4xx_do_not_count_for_services_but_403_429_count_for_chips(
    app: App,
) -> None:
    svc = breakers(app).get("chatwoot", config=CFG)
    for exc in [
        httpx.ReadTimeout("slow"),
        TimeoutError(),
        GatewayFailure(kind="timeout"),
        GatewayFailure(403),
        GatewayFailure(429),
        InvalidInput("bad"),
    ] * 2:
        await fail_with(svc, exc)
    assert (await svc.status()).state == "closed"

    chip = breakers(app).chip(42)
    assert chip.config.count_status == frozenset({403, 429})
    await fail_with(chip, GatewayFailure(404))  # other 4xx: not the chip's fault
    for _ in range(5):
        await fail_with(chip, GatewayFailure(403))
    st = await chip.status()
    assert (st.state, st.last_error) == ("open", "http_403")


async def test_timeouts_count_when_configured(app: App) -> None:
    b = breakers(app).get("slack", config=BreakerConfig(failure_threshold=2, count_timeouts=True))
    await fail_with(b, httpx.ReadTimeout("slow"))
    await fail_with(b, TimeoutError())
    assert (await b.status()).state == "open"


async def test_failure_rate_over_the_window_opens_once_enough_calls(app: App) -> None:
    cfg = BreakerConfig(failure_threshold=100, failure_rate=0.5, window_calls=10, min_calls=6)
    b = breakers(app).get("evolution", config=cfg)
    for _ in range(2):  # fail, ok, fail, ok: 50% but only 4 calls
        await fail_with(b, GatewayFailure(500))
        await b.call(asyncio.sleep, 0)
    assert (await b.status()).state == "closed"
    await fail_with(b, GatewayFailure(500))
    assert (await b.status()).state == "closed"  # 3/5, fewer than min_calls
    await fail_with(b, GatewayFailure(500))  # 4/6 >= 50%
    assert (await b.status()).state == "open"
    assert await transitions(app, "evolution") == [("closed", "open", "failure_rate")]


async def test_open_time_doubles_per_reopen_up_to_the_cap_and_resets_after_recovery(
    app: App, clock: FrozenClock
) -> None:
    b = breakers(app).get("evolution", config=CFG)
    for _ in range(3):
        await fail_with(b, GatewayFailure(502))
    seen = []
    for _ in range(6):
        st = await b.status()
        assert st.open_until is not None
        seen.append((st.open_until - clock.now()).total_seconds())
        clock.set(st.open_until)
        await fail_with(b, GatewayFailure(502))  # the trial fails: open again, longer
    assert seen == [60, 120, 240, 480, 600, 600]
    clock.advance(600)
    await b.call(asyncio.sleep, 0)  # trial succeeds
    assert (await b.status()).state == "closed"
    for _ in range(3):
        await fail_with(b, GatewayFailure(502))
    st = await b.status()
    assert st.open_until == clock.now() + timedelta(seconds=60)


async def test_half_open_lets_the_configured_trials_through_and_refuses_the_rest(
    app: App, clock: FrozenClock
) -> None:
    cfg = BreakerConfig(failure_threshold=1, half_open_calls=2, half_open_retry_s=5)
    b = breakers(app).get("anthropic", config=cfg)
    await fail_with(b, GatewayFailure(500))
    clock.advance(60)
    first, second = await b.acquire(), await b.acquire()
    assert first.trial and second.trial
    with pytest.raises(CircuitOpen) as refused:
        await b.acquire()
    assert refused.value.state == "half_open"
    assert refused.value.retry_at == clock.now() + timedelta(seconds=5)
    await b.record(first, "ok")
    assert (await b.status()).state == "half_open"
    await b.record(second, "ok")
    assert (await b.status()).state == "closed"
    assert [t[1] for t in await transitions(app, "anthropic")] == ["open", "half_open", "closed"]


async def test_a_trial_that_never_reports_back_frees_its_permit(
    app: App, clock: FrozenClock
) -> None:
    b = breakers(app).get("slack", config=BreakerConfig(failure_threshold=1, trial_timeout_s=30))
    await fail_with(b, GatewayFailure(500))
    clock.advance(60)
    await b.acquire()  # the process running it dies: no record
    with pytest.raises(CircuitOpen):
        await b.acquire()
    clock.advance(31)
    assert (await b.acquire()).trial


async def test_a_concurrent_failure_burst_opens_once_with_one_transition_row(app: App) -> None:
    b = breakers(app).get("evolution", config=BreakerConfig(failure_threshold=5))
    gate = asyncio.Event()
    started = 0

    async def failing() -> None:
        nonlocal started
        started += 1
        if started == 30:
            gate.set()
        await gate.wait()
        raise httpx.ConnectError("down")

    results = await asyncio.gather(*(b.call(failing) for _ in range(30)), return_exceptions=True)
    assert all(isinstance(r, httpx.ConnectError) for r in results)
    assert (await b.status()).state == "open"
    assert await transitions(app, "evolution") == [("closed", "open", "consecutive_failures")]


async def test_a_failure_can_be_reported_without_raising(app: App) -> None:
    b = breakers(app).get("chatwoot", config=BreakerConfig(failure_threshold=1))
    async with b.guard() as permit:
        permit.fail("http_503")
    assert (await b.status()).state == "open"


async def test_operator_force_open_reset_disable_are_audited_transitions(
    app: App, clock: FrozenClock
) -> None:
    actor = audit.Actor("ana")
    await br.force_open(app, "evolution", "manutenção do gateway", actor)
    b = breakers(app).get("evolution")
    with pytest.raises(CircuitOpen) as refused:
        await b.acquire()
    assert refused.value.retry_at is None and refused.value.state == "forced_open"
    clock.advance(3600)  # forced open does not time out
    with pytest.raises(CircuitOpen):
        await b.acquire()
    await br.disable(app, "evolution", "teste", actor)
    for _ in range(10):
        await fail_with(b, GatewayFailure(500))
    assert (await b.status()).state == "disabled"
    await br.reset(app, "evolution", "normal", actor)
    assert (await b.status()).state == "closed"
    rows = await transitions(app, "evolution")
    assert [(f, t) for f, t, _ in rows] == [
        ("closed", "forced_open"),
        ("forced_open", "disabled"),
        ("disabled", "closed"),
    ]
    trail = await audit.recent(app)
    assert [r["acao"] for r in reversed(trail)] == [
        "circuit.forced_open",
        "circuit.disabled",
        "circuit.reset",
    ]
    assert trail[-1]["operador"] == "ana" and trail[-1]["motivo"] == "manutenção do gateway"
    hist = await br.history(app, "evolution", hours=1)
    assert [h.operador for h in hist] == ["ana"] * 3


async def test_status_all_lists_services_and_chips_seen_by_any_process(app: App) -> None:
    await fail_with(breakers(app).chip(7), GatewayFailure(500))
    names = [s.name for s in await br.status_all(app)]
    assert {"evolution", "anthropic", "chatwoot", "slack", "chip:7"} <= set(names)
    with pytest.raises(InvalidInput):
        breakers(app).get("Bad Name")


async def test_redis_down_keeps_breakers_working_locally_and_postgres_down_too(
    settings: Settings, clock: FrozenClock, tmp_path: Path
) -> None:
    home = tmp_path / "own-redis"
    own = settings.model_copy(update={"redis_url": SecretStr(local.ensure_redis(home))})
    try:
        async with App.open(own, clock=clock) as app:
            b = breakers(app).get("evolution", config=CFG)
            await fail_with(b, GatewayFailure(500))
            await fail_with(b, GatewayFailure(500))
            local.stop_redis(home)  # the Redis this App uses goes away
            await fail_with(b, GatewayFailure(500))  # third failure, counted locally
            st = await b.status()
            assert (st.state, st.backend, st.consecutive_failures) == ("open", "local", 3)
            assert st.redis_error
            with pytest.raises(CircuitOpen):
                await b.acquire()
            assert await transitions(app, "evolution") == [
                ("closed", "open", "consecutive_failures")
            ]
            with pytest.raises(StorageError):  # an override needs the shared state
                await br.force_open(app, "evolution", "x", audit.Actor("ana"))
            await app.pool.close()  # Postgres gone as well: still no crash
            clock.advance(61)
            assert await b.call(asyncio.sleep, 0, "ok") == "ok"
            assert (await b.status()).state == "closed"
    finally:
        local.stop_redis(home)


async def test_the_gateway_error_family_is_classified_by_its_attributes(app: App) -> None:
    from julia.core import errors

    svc = breakers(app).get("evolution")
    chip = breakers(app).chip(3)
    assert svc.classify(errors.GatewayTimeout()) == ("ignore", "timeout")
    assert svc.classify(errors.GatewayNetworkError()) == ("fail", "network")
    assert svc.classify(errors.GatewayServerError(status=503)) == ("fail", "http_503")
    assert svc.classify(errors.GatewayForbidden(status=403)) == ("ignore", "http_403")
    assert chip.classify(errors.GatewayForbidden(status=403)) == ("fail", "http_403")
    assert chip.classify(errors.GatewayRateLimited(status=429)) == ("fail", "http_429")
    assert chip.classify(errors.GatewayNotFound(status=404)) == ("ignore", "http_404")


async def test_transitions_are_counted_in_prometheus(app: App) -> None:
    from prometheus_client import REGISTRY

    labels = {"name": "chip:99", "from_state": "closed", "to_state": "open"}
    before = REGISTRY.get_sample_value("julia_circuit_transitions_total", labels) or 0
    b = breakers(app).get("chip:99", config=BreakerConfig(failure_threshold=1))
    await fail_with(b, GatewayFailure(500))
    assert REGISTRY.get_sample_value("julia_circuit_transitions_total", labels) == before + 1
    assert REGISTRY.get_sample_value("julia_circuit_state", {"name": "chip:99"}) == 2


async def test_guard_all_acts_as_nested_guards_in_one_round_trip_each_way(
    app: App, clock: FrozenClock
) -> None:
    """Outermost refusing first: its CircuitOpen, and the trial the inner one gave is
    freed; a failure counts in each breaker by its own classification; a success closes
    a half-open one."""
    outer = breakers(app).get("evolution", config=CFG)
    inner = breakers(app).get("chip:71", config=CFG)
    for _ in range(3):
        await fail_with(inner, GatewayFailure(503))
    clock.advance(61)  # inner's open time is over: its next call is a trial
    await outer.force("forced_open", "test", audit.Actor("ana"))
    with pytest.raises(CircuitOpen) as refused:
        async with br.guard_all(app, [outer, inner]):
            pytest.fail("let through")
    assert refused.value.name == "evolution"
    assert (await inner.status()).state == "half_open"
    await outer.force("closed", "test", audit.Actor("ana"))
    async with br.guard_all(app, [outer, inner]):  # the trial was given back: allowed
        pass
    assert (await inner.status()).state == "closed"
    with pytest.raises(GatewayFailure):
        async with br.guard_all(app, [outer, inner]):
            raise GatewayFailure(503)
    assert [(await b.status()).consecutive_failures for b in (outer, inner)] == [1, 1]
    with pytest.raises(GatewayFailure):  # a 429 counts for neither under this config
        async with br.guard_all(app, [outer, inner]):
            raise GatewayFailure(429)
    assert [(await b.status()).consecutive_failures for b in (outer, inner)] == [1, 1]
