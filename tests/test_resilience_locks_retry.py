"""Distributed locks (owner-only release, renewal, typed error or None) and the retry
helper (full-jitter backoff, cap, budget, what is retried)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from julia.core import local
from julia.core.app import App
from julia.core.clock import FrozenClock
from julia.core.errors import CircuitOpen, LockNotAcquired, StorageError
from julia.resilience.locks import Lock, lock
from julia.resilience.retry import (
    RetryBudget,
    backoff_ceiling,
    backoff_delay,
    budget,
    retry,
    retryable,
)
from julia.settings import Settings

# --- locks ------------------------------------------------------------------


async def test_second_holder_gets_a_typed_error_or_none(app: App) -> None:
    async with lock(app, "job:rescue") as held:
        assert held is not None and held.held
        with pytest.raises(LockNotAcquired) as busy:
            async with lock(app, "job:rescue"):
                pytest.fail("entered a held lock")
        assert busy.value.name == "job:rescue"
        async with lock(app, "job:rescue", required=False) as other:
            assert other is None
    async with lock(app, "job:rescue") as again:  # released on exit
        assert again is not None
    assert await app.redis.ttl(app.keys.key("lock", "job:rescue")) == -2


async def test_only_the_owner_releases(app: App) -> None:
    mine = Lock(app, "x", ttl_s=30)
    assert await mine.acquire()
    await app.redis.set(mine.key, "someone-else", px=30000)  # it expired and was retaken
    assert not await mine.release()
    assert await app.redis.get(mine.key) == "someone-else"
    assert not await mine.renew()
    assert mine.lost


async def test_every_lock_has_a_ttl_and_renewal_extends_it(app: App) -> None:
    async with lock(app, "long", ttl_s=1.0, renew=True) as held:
        assert held is not None
        assert 0 < await app.redis.pttl(held.key) <= 1000
        await asyncio.sleep(1.6)  # Redis's TTL is real time: past it, renewal kept the lock
        assert await app.redis.get(held.key) == held.token and not held.lost


async def test_waiting_acquires_once_the_holder_releases(app: App) -> None:
    first = Lock(app, "w", ttl_s=30)
    assert await first.acquire()

    async def release_soon() -> None:
        await asyncio.sleep(0.1)
        await first.release()

    releaser = asyncio.create_task(release_soon())
    async with lock(app, "w", wait_s=5) as held:
        assert held is not None
    await releaser


async def test_contended_lock_has_one_winner(app: App) -> None:
    winners = 0

    async def attempt() -> None:
        nonlocal winners
        async with lock(app, "race", required=False) as held:
            if held is not None:
                winners += 1
                await asyncio.sleep(0.05)

    await asyncio.gather(*(attempt() for _ in range(50)))
    assert winners == 1


async def test_redis_down_means_no_lock(
    settings: Settings, clock: FrozenClock, tmp_path: Path
) -> None:
    home = tmp_path / "r"
    own = settings.model_copy(update={"redis_url": SecretStr(local.ensure_redis(home))})
    try:
        async with App.open(own, clock=clock) as app:
            local.stop_redis(home)
            with pytest.raises(StorageError):
                async with lock(app, "x"):
                    pass
            async with lock(app, "x", required=False) as held:
                assert held is None
    finally:
        local.stop_redis(home)


# --- retry ------------------------------------------------------------------


def test_backoff_is_exponential_capped_and_fully_jittered() -> None:
    assert [backoff_ceiling(n, base_s=0.5, cap_s=30) for n in range(8)] == [
        0.5, 1, 2, 4, 8, 16, 30, 30,
    ]  # fmt: skip
    rng = random.Random(3)
    delays = [backoff_delay(4, base_s=0.5, cap_s=30, rng=rng) for _ in range(2000)]
    assert all(0 <= d <= 8 for d in delays)
    assert min(delays) < 0.5 and max(delays) > 7.5  # the whole range, not a fixed step
    assert backoff_delay(10_000, base_s=1, cap_s=60, rng=rng) <= 60
    with pytest.raises(ValueError):
        backoff_ceiling(-1, base_s=1, cap_s=2)


class Flaky(Exception):
    def __init__(self, status_code: int) -> None:
        super().__init__(status_code)
        self.status_code = status_code


async def test_retry_retries_transient_errors_sleeping_on_the_app_clock(
    app: App, clock: FrozenClock
) -> None:
    calls = 0
    start = clock.now()

    async def sometimes() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise Flaky(503)
        return "sent"

    assert await retry(app, "evolution", sometimes, attempts=3, base_s=1, cap_s=10) == "sent"
    assert calls == 3
    assert 0 <= (clock.now() - start).total_seconds() <= 1 + 2


async def test_retry_gives_up_after_attempts_and_on_permanent_errors(app: App) -> None:
    calls = 0

    async def always(exc: Exception) -> None:
        nonlocal calls
        calls += 1
        raise exc

    with pytest.raises(Flaky):
        await retry(app, "a", lambda: always(Flaky(500)), attempts=4)
    assert calls == 4
    calls = 0
    with pytest.raises(Flaky):
        await retry(app, "b", lambda: always(Flaky(400)), attempts=4)
    assert calls == 1
    calls = 0
    with pytest.raises(CircuitOpen):
        await retry(app, "c", lambda: always(CircuitOpen("x", "open")), attempts=4)
    assert calls == 1


def test_what_is_retryable() -> None:
    from julia.core import errors

    assert retryable(httpx.ConnectError("x")) and retryable(httpx.ReadTimeout("x"))
    assert retryable(Flaky(429)) and retryable(Flaky(502))
    assert not retryable(Flaky(403)) and not retryable(ValueError())
    # the gateway errors say it themselves
    assert retryable(errors.GatewayServerError(status=502))
    assert not retryable(errors.GatewayBadRequest(status=400))


async def test_retry_after_hint_is_honoured_within_the_cap(app: App, clock: FrozenClock) -> None:
    class Limited(Flaky):
        retry_after = 7

    start = clock.now()
    calls = 0

    async def once_limited() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise Limited(429)

    await retry(app, "z", once_limited, base_s=0.1, cap_s=60)
    assert (clock.now() - start).total_seconds() == 7


async def test_the_budget_stops_retries_when_failures_pile_up(app: App) -> None:
    app.settings.retry_budget_max = 4
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise Flaky(503)

    for _ in range(5):
        with pytest.raises(Flaky):
            await retry(app, "slack", down, attempts=5)
    # 4 tokens: retries stop once 2 or fewer are left, i.e. after 2 failures in all
    assert calls == 5 + 1
    b = budget(app, "slack")
    assert not b.can_retry()
    for _ in range(30):
        b.on_success()
    assert b.can_retry()


def test_budget_arithmetic() -> None:
    b = RetryBudget(max_tokens=10, ratio=0.5)
    for _ in range(5):
        b.on_failure()
    assert not b.can_retry()
    b.on_success()
    assert b.can_retry()
