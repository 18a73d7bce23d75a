"""Worker heartbeats in Postgres and Redis (120 s TTL), and what happens when Redis is down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from julia.chips import sending as chip_sending
from julia.core.app import App
from julia.core.clock import FrozenClock
from julia.core.errors import InvalidInput
from julia.ops import heartbeat, worker
from julia.outbound import send
from julia.settings import Settings


async def test_beat_writes_the_row_and_a_redis_key_with_the_ttl(
    app: App, clock: FrozenClock
) -> None:
    await heartbeat.register(app, "w-1", ["fila"])
    worker.fila_consumer.counters(app)["fila.sent"] = 7
    await heartbeat.beat(app, "w-1")
    ttl = await app.redis.ttl(app.keys.key("worker", "w-1"))
    assert 0 < ttl <= 120
    [w] = await heartbeat.workers_status(app)
    assert (w.id, w.state, w.redis_beat, w.processed) == ("w-1", "alive", True, 7)
    clock.advance(121)
    [w] = await heartbeat.workers_status(app)
    assert w.state == "dead" and w.age_s == 121.0
    await heartbeat.unregister(app, "w-1")
    assert await heartbeat.workers_status(app) == []
    [w] = await heartbeat.workers_status(app, include_stopped=True)
    assert w.state == "stopped" and w.redis_beat is False


@pytest.fixture
async def no_redis_app(
    settings: Settings, clock: FrozenClock, sandbox_gateway: str
) -> AsyncIterator[App]:
    broken = settings.model_copy(
        update={"redis_url": SecretStr("redis://127.0.0.1:1/0"), "evolution_url": sandbox_gateway,
                "rate_limits_enabled": False}
    )  # fmt: skip
    async with App.open(broken, clock=clock) as opened:
        yield opened


async def test_with_redis_down_the_beat_still_reaches_postgres(no_redis_app: App) -> None:
    app = no_redis_app
    await heartbeat.register(app, "w-2", ["fila"])
    await heartbeat.beat(app, "w-2")  # logs the Redis failure, never raises
    [w] = await heartbeat.workers_status(app)
    assert (w.state, w.redis_beat) == ("alive", None)


async def test_with_redis_down_the_number_check_asks_the_gateway(no_redis_app: App) -> None:
    route = chip_sending.implicit(no_redis_app)
    assert await send.numbers_on_whatsapp(no_redis_app, route, ["5511999990001"]) == {
        "5511999990001": True
    }


async def test_the_worker_stops_cleanly_when_told(app: App) -> None:
    stop = asyncio.Event()
    stop.set()
    wid = await worker.run_worker(
        app, consumers=["fila"], stop=stop, handle_signals=False, name="x"
    )
    [w] = await heartbeat.workers_status(app, include_stopped=True)
    assert (wid, w.state, w.consumers) == ("x", "stopped", ["fila"])
    with pytest.raises(InvalidInput, match="unknown consumer"):
        await worker.run_worker(app, consumers=["nope"], stop=stop, handle_signals=False)
