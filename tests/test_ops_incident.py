"""The incident, replayed: the worker stops with messages pending. With the clock moved
minute by minute and the scheduler's jobs run on their ticks, the worker-heartbeat and
backlog alerts fire within 5 minutes, once each, reach Slack once each, and do not
fire again within their cooldown."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from julia.core.app import App
from julia.core.clock import FrozenClock
from julia.fila import queue
from julia.notify import alerts
from julia.ops import health, heartbeat
from julia.ops.jobs import registry, runner
from julia.sandbox import slack as slack_sandbox
from julia.settings import Settings

T0 = datetime(2026, 3, 4, 13, 3, 30, tzinfo=UTC)  # 10:03:30 in São Paulo: between ticks


@pytest.fixture
def slack() -> Iterator[tuple[str, slack_sandbox.SlackState]]:
    with slack_sandbox.running() as running:
        yield running


async def run_due(app: App, prev: datetime, now: datetime) -> list[str]:
    """What the scheduler does between ``prev`` and ``now``: every job whose tick fell
    in that span runs once."""
    ran = []
    for job in runner.scheduled_jobs(app):
        tick = registry.current_tick(job.schedule(app.settings), runner.tz(app), now)
        if tick is not None and tick > prev:
            await runner.run_job(app, job.name)
            ran.append(job.name)
    return ran


async def test_stopped_worker_with_pending_messages_alerts_once_within_5_minutes(
    settings: Settings, slack: tuple[str, slack_sandbox.SlackState]
) -> None:
    url, state = slack
    clock = FrozenClock(T0 - timedelta(minutes=35))
    configured = settings.model_copy(update={"slack_webhook_url": SecretStr(url)})
    async with App.open(configured, clock=clock) as app:
        # 35 minutes ago a campaign of 60 messages was queued, due at once...
        await queue.enqueue_many(
            app,
            [queue.NewMessage(texto=f"Oi {i}", telefone=f"+55119876500{i:02d}", tipo="campanha")
             for i in range(60)],
        )  # fmt: skip
        # ...and now its worker beats one last time and dies (SIGKILL: no clean stop).
        clock.set(T0)
        await heartbeat.register(app, "w-incident", ["fila"])
        await heartbeat.beat(app, "w-incident")

        fired: dict[str, datetime] = {}
        prev = T0
        for _ in range(5):
            now = clock.advance(60)
            ran = await run_due(app, prev, now)
            assert "watchdog" in ran
            prev = now
            for a in await alerts.list_alerts(app):
                fired.setdefault(a.kind, a.created_at)
        assert set(fired) >= {"worker.heartbeat", "fila.backlog"}
        assert fired["fila.backlog"] - T0 <= timedelta(minutes=5)
        assert fired["worker.heartbeat"] - T0 <= timedelta(minutes=5)

        # 25 more minutes of ticks: inside both cooldowns, no new alert rows
        for _ in range(24):
            now = clock.advance(60)
            await run_due(app, prev, now)
            prev = now
        rows = await alerts.list_alerts(app)
        kinds = [a.kind for a in rows]
        assert kinds.count("worker.heartbeat") == 1 and kinds.count("fila.backlog") == 1
        by_kind = {a.kind: a for a in rows}
        assert by_kind["worker.heartbeat"].repeats >= 20  # seen every minute, told once
        assert by_kind["worker.heartbeat"].severity == "critical"
        assert by_kind["fila.backlog"].details["stale_pending"] == 60

        # health says what is wrong, and the contract's exit code follows from it
        report = await health.check(app)
        assert report.status == "unhealthy"
        assert report.component("workers").score == 0
        assert "60 message(s) due" in report.component("workers").summary

        await alerts.flush(app)
        texts = [m["text"] for m in state.messages]
        assert sum("Worker without heartbeat" in t for t in texts) == 1
        assert sum("Queue backlog" in t for t in texts) == 1

        # past the heartbeat's 30-minute cooldown, it is raised again (the stall goes on)
        for _ in range(5):
            now = clock.advance(60)
            await run_due(app, prev, now)
            prev = now
        kinds = [a.kind for a in await alerts.list_alerts(app)]
        assert kinds.count("worker.heartbeat") == 2
        assert kinds.count("fila.backlog") == 1  # 60-minute cooldown


async def test_a_long_dead_worker_replaced_by_a_live_one_is_not_alerted(
    app: App, clock: FrozenClock
) -> None:
    from julia.ops import monitors

    await heartbeat.register(app, "w-old", ["fila"])
    await heartbeat.beat(app, "w-old")
    clock.advance(minutes=90)  # w-old died 90 minutes ago; w-new runs
    await heartbeat.register(app, "w-new", ["fila"])
    await heartbeat.beat(app, "w-new")
    assert await monitors.worker_heartbeat(app) == []
    clock.advance(minutes=3)  # now w-new is silent too, and recently: alert
    (raised,) = await monitors.worker_heartbeat(app)
    assert raised.new and "w-new" in raised.alert.message and "w-old" not in raised.alert.message


async def test_workers_watch_the_scheduler(app: App, clock: FrozenClock) -> None:
    """The worker's ``ops`` consumer raises ``job.late`` when the scheduler stopped."""
    import asyncio
    import dataclasses

    from julia.ops import monitors

    await runner.record_schedules(app, runner.scheduled_jobs(app), scheduler="sched-1")
    await runner.run_job(app, "watchdog")  # a scheduler ran once...
    clock.advance(minutes=30)  # ...and then every scheduler died
    fast = app.settings.model_copy(
        update={"worker_watch_interval_s": 0.05, "worker_metrics_port": 0}
    )
    stop = asyncio.Event()
    task = asyncio.create_task(
        monitors.worker_consumer(dataclasses.replace(app, settings=fast), stop, "w1")
    )
    for _ in range(100):
        if await alerts.list_alerts(app, kind="job.late"):
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 5)
    late = {a.dedupe_key for a in await alerts.list_alerts(app, kind="job.late")}
    assert "watchdog" in late and "metrics_snapshot" in late
