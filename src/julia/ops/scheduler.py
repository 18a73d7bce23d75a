"""``julia scheduler``: fire every scheduled job on its ticks, until told to stop.

APScheduler 3 (``AsyncIOScheduler``) computes the ticks in the business time zone
(``JULIA_TIMEZONE``, America/Sao_Paulo); each tick starts :func:`runner.run_job` as
a task, which takes the job's lock and its tick row, so any number of schedulers on
any number of machines run each tick once. A tick missed by more than
``JULIA_SCHEDULER_MISFIRE_GRACE_S`` (the process was paused) is skipped, and a
job that falls behind raises ``job_late`` from the watchdog. On SIGTERM/SIGINT (or
``stop``) no new tick fires, running jobs get ``JULIA_WORKER_GRACE_S`` to finish,
and pending Slack deliveries are flushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Sequence
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from julia.core import metrics
from julia.core.app import App
from julia.core.errors import InvalidInput
from julia.core.logs import get_logger
from julia.notify import alerts
from julia.ops import catalog as _catalog  # noqa: F401  (importing it registers the jobs)
from julia.ops.jobs import registry, runner

log = get_logger(__name__)


async def run_scheduler(
    app: App,
    *,
    only: Sequence[str] | None = None,
    stop: asyncio.Event | None = None,
    handle_signals: bool = True,
    metrics_port: int | None = None,
) -> list[str]:
    """Run the scheduled jobs (or ``only`` these) until ``stop`` or a signal; returns the
    names of the jobs it scheduled."""
    jobs = runner.scheduled_jobs(app)
    if only:
        unknown = sorted(set(only) - set(registry.JOBS))
        if unknown:
            raise InvalidInput(f"unknown job(s) {', '.join(unknown)}")
        jobs = [j for j in jobs if j.name in set(only)]
    await runner.record_schedules(app, jobs, scheduler=runner.RUNNER)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    if handle_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    port = app.settings.scheduler_metrics_port if metrics_port is None else metrics_port
    server: Any = metrics.serve(port, app.settings.metrics_host)
    tz = runner.tz(app)
    running: set[asyncio.Task[runner.Execution]] = set()

    async def fire(name: str) -> None:
        task = asyncio.create_task(runner.run_job(app, name), name=f"job-{name}")
        running.add(task)
        task.add_done_callback(_done(running))

    sched = AsyncIOScheduler(timezone=tz, event_loop=loop)
    for j in jobs:
        sched.add_job(
            fire, trigger=j.schedule(app.settings).trigger(tz), args=[j.name], id=j.name,
            name=j.name, coalesce=True, max_instances=1,
            misfire_grace_time=app.settings.scheduler_misfire_grace_s,
        )  # fmt: skip
    sched.start()
    names = [j.name for j in jobs]
    log.info("scheduler.started", jobs=names, timezone=str(tz), metrics_port=port or None)
    try:
        await stop.wait()
    finally:
        sched.shutdown(wait=False)
        await _drain(running, app.settings.worker_grace_s)
        await alerts.flush(app)
        if server is not None:
            server.shutdown()
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        log.info("scheduler.stopped")
    return names


def _done(running: set[asyncio.Task[runner.Execution]]) -> Any:
    def forget(task: asyncio.Task[runner.Execution]) -> None:
        running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("job.crashed", task=task.get_name(), error=f"{type(exc).__name__}: {exc}")

    return forget


async def _drain(running: set[asyncio.Task[runner.Execution]], grace_s: float) -> None:
    if not running:
        return
    _done_tasks, pending = await asyncio.wait(set(running), timeout=grace_s)
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
