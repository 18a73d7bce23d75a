"""Trusting a closed breaker while hearing its changes (``breaker.watch``): no round trip
while all is well, and a change made by another process is obeyed once it is heard."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from julia.core import audit
from julia.core.app import App
from julia.core.clock import FrozenClock
from julia.core.errors import CircuitOpen
from julia.resilience import breaker as br
from julia.resilience.breaker import BreakerConfig, breakers
from julia.settings import Settings

CFG = BreakerConfig(failure_threshold=3, failure_rate=0, window_calls=4, min_calls=4)


async def heard(app: App) -> br._Watch:
    """Wait until the app's watch is subscribed."""
    w = br._watch(app)
    deadline = time.monotonic() + 10
    while not w.live:
        assert time.monotonic() < deadline, "the watch never subscribed"
        await asyncio.sleep(0.01)
    return w


async def until_heard(w: br._Watch, key: str, seen: int) -> None:
    deadline = time.monotonic() + 10
    while w.changes.get(key, 0) <= seen:
        assert time.monotonic() < deadline, "the change was never heard"
        await asyncio.sleep(0.01)


async def clean(b: br.Breaker) -> None:
    """Successes until the window is full of them (a steady, trustable breaker), then one
    more once the echoes of those recorded successes have been heard."""
    for _ in range(CFG.window_calls + 1):
        await b.call(asyncio.sleep, 0)
    await asyncio.sleep(0.1)
    await b.call(asyncio.sleep, 0)


async def open_behind_its_back(app: App, b: br.Breaker) -> None:
    """Write an open state straight into Redis, the way no process would: nothing is
    published, so only a process that asks Redis can see it."""
    until = br.to_ms(app.clock.now()) + 60_000
    await app.redis.hset(
        b.key, mapping={"state": "open", "open_until": until, "epoch": 99, "window": ""}
    )


@pytest.fixture
async def watching(app: App) -> AsyncIterator[App]:
    task = asyncio.create_task(br.watch(app, retry_s=0.05))
    await heard(app)
    try:
        yield app
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_clean_closed_breaker_is_trusted_without_asking_redis(watching: App) -> None:
    b = breakers(watching).get("evolution", config=CFG)
    await clean(b)
    await open_behind_its_back(watching, b)
    for _ in range(3):  # trusted: Redis is not asked, so the write is unseen
        await b.call(asyncio.sleep, 0)


async def test_trust_lasts_at_most_breaker_trust_s(settings: Settings, clock: FrozenClock) -> None:
    async with App.open(settings.model_copy(update={"breaker_trust_s": 0.2}), clock=clock) as app:
        task = asyncio.create_task(br.watch(app, retry_s=0.05))
        try:
            await heard(app)
            b = breakers(app).get("evolution", config=CFG)
            await clean(b)
            await open_behind_its_back(app, b)
            await b.call(asyncio.sleep, 0)
            await asyncio.sleep(0.25)
            with pytest.raises(CircuitOpen):
                await b.call(asyncio.sleep, 0)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_a_change_made_by_another_process_is_obeyed_once_heard(
    watching: App, settings: Settings, clock: FrozenClock
) -> None:
    b = breakers(watching).get("chip:7", config=CFG)
    await clean(b)
    w = br._watch(watching)
    seen = w.changes.get(b.key, 0)
    async with App.open(settings, clock=clock) as other:  # another worker, same Redis
        await br.force_open(other, "chip:7", "WhatsApp restricted it", audit.Actor("ops"))
    await until_heard(w, b.key, seen)
    with pytest.raises(CircuitOpen):
        await b.call(asyncio.sleep, 0)


async def test_failures_elsewhere_stop_the_trust_so_successes_are_counted_again(
    watching: App, settings: Settings, clock: FrozenClock
) -> None:
    """Another process's failure makes the window unclean: this one hears it and records
    its next success (which resets the consecutive count) instead of skipping it."""
    b = breakers(watching).get("evolution", config=CFG)
    await clean(b)
    w = br._watch(watching)
    async with App.open(settings, clock=clock) as other:
        ob = breakers(other).get("evolution", config=CFG)
        for _ in range(2):
            seen = w.changes.get(b.key, 0)
            with pytest.raises(RuntimeError):
                async with ob.guard():
                    raise RuntimeError("gateway down")
            await until_heard(w, b.key, seen)
            await b.call(asyncio.sleep, 0)  # heard: asks, and its success resets the count
        assert (await ob.status()).consecutive_failures == 0
        seen = w.changes.get(b.key, 0)
        with pytest.raises(RuntimeError):
            async with ob.guard():
                raise RuntimeError("gateway down")
        assert (await ob.status()).state == "closed"  # 3 failures, never 3 in a row


async def test_without_the_watch_every_acquire_asks_redis(app: App) -> None:
    b = breakers(app).get("evolution", config=CFG)
    await clean(b)
    await open_behind_its_back(app, b)
    with pytest.raises(CircuitOpen):
        await b.call(asyncio.sleep, 0)


async def test_a_lost_subscription_ends_the_trust(app: App) -> None:
    task = asyncio.create_task(br.watch(app, retry_s=30))
    await heard(app)
    b = breakers(app).get("evolution", config=CFG)
    await clean(b)
    task.cancel()  # the ear is gone: nothing said since can be known
    await asyncio.gather(task, return_exceptions=True)
    assert not br._watch(app).live
    await open_behind_its_back(app, b)
    with pytest.raises(CircuitOpen):
        await b.call(asyncio.sleep, 0)
