"""The outbound consumer that ``julia worker`` runs: claim, send, repeat.

It wakes on ``LISTEN julia_fila`` (every enqueue NOTIFYs) and also polls every
``JULIA_WORKER_POLL_INTERVAL_S``, keeps up to two claimed batches in flight
(claiming the next while the current one sends) under one concurrency limit,
renews its leases every third of ``JULIA_FILA_LEASE_S`` (and sends nothing once
it could not renew them in time),
hears every breaker change (:func:`julia.resilience.breaker.watch`),
and, at start and every ``JULIA_WORKER_RESCUE_INTERVAL_S``, rescues expired
leases, reconciles uncertain sends and expires stale messages. When ``stop`` is
set it claims nothing more, gives in-flight sends ``JULIA_WORKER_GRACE_S`` to
finish, and releases whatever it still holds.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import psycopg

from julia.core.app import App
from julia.core.logs import get_logger
from julia.fila import queue
from julia.guardrails import rules as guardrails
from julia.outbound import guards, send
from julia.resilience import breaker

log = get_logger(__name__)

#: Claimed batches one process keeps in flight (one sending, one being prepared).
MAX_BATCHES = 2


def counters(app: App) -> dict[str, int]:
    """This process's running totals, shown by the worker heartbeat."""
    totals: dict[str, int] = app.extensions.setdefault("worker.counters", {})
    return totals


async def listen(app: App, wake: asyncio.Event) -> None:
    """Set ``wake`` on every NOTIFY of the queue channel, and tell the opt-out watch of
    every opt-out announced and of its own echoes (:class:`guards.OptOutWatch`);
    reconnect on failure."""
    watch = guards.optout_watch(app)
    while True:
        echoes: asyncio.Task[None] | None = None
        try:
            conn = await psycopg.AsyncConnection.connect(
                app.endpoints.database_url, autocommit=True
            )
            async with conn:
                await conn.execute(f"LISTEN {queue.CHANNEL}")
                await conn.execute(f"LISTEN {guardrails.OPTOUT_CHANNEL}")
                wake.set()  # anything enqueued while we were not listening
                echoes = asyncio.create_task(_echo(app, watch), name="optout-echo")
                async for n in conn.notifies():
                    if n.channel != guardrails.OPTOUT_CHANNEL:
                        wake.set()
                    elif n.payload == watch.echo:
                        watch.echoed()
                    elif not n.payload.startswith("echo:"):  # another worker's echo: nothing
                        watch.announced()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("fila.listen_failed", error=str(exc))
            watch.deaf()  # now, not after the back-off below
            await asyncio.sleep(app.settings.worker_poll_interval_s * 4)
        finally:
            if echoes is not None:
                echoes.cancel()
            watch.deaf()


async def _echo(app: App, watch: guards.OptOutWatch) -> None:
    """Every ``ECHO_EVERY_S``, NOTIFY the opt-out channel with this watch's echo, through
    the pool: the listener counts as hearing only while the echoes come back."""
    while True:
        try:
            async with app.pool.connection() as conn:
                await conn.execute(
                    "SELECT pg_notify(%s, %s)", (guardrails.OPTOUT_CHANNEL, watch.echo)
                )
        except Exception as exc:  # unheard, the watch goes deaf by itself
            log.warning("fila.optout_echo_failed", error=str(exc))
        await asyncio.sleep(guards.ECHO_EVERY_S)


async def maintain(app: App) -> None:
    """Rescue expired leases, reconcile uncertain sends, expire stale messages."""
    try:
        await queue.rescue(app)
        await send.reconcile(app)
        await queue.expire(app)
    except Exception as exc:
        log.error("fila.maintenance_failed", error=str(exc))


async def _maintenance_loop(app: App) -> None:
    while True:
        await asyncio.sleep(app.settings.worker_rescue_interval_s)
        await maintain(app)


def _account(app: App, task: asyncio.Task[send.BatchReport]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("fila.batch_failed", error=f"{type(exc).__name__}: {exc}")
        return
    report = task.result()
    c = counters(app)
    for name in ("sent", "retried", "dead", "blocked", "uncertain", "rescheduled"):
        c[f"fila.{name}"] = c.get(f"fila.{name}", 0) + getattr(report, name)


async def run(app: App, stop: asyncio.Event, worker_id: str) -> None:
    """Consume the outbound queue until ``stop`` is set."""
    s = app.settings
    gate = asyncio.Semaphore(s.worker_concurrency)
    wake = asyncio.Event()
    in_flight: set[asyncio.Task[Any]] = set()
    send.check_lease(s)  # a lease shorter than a send's deadline would resend late sends
    lease = send.LeaseKeeper(app, worker_id)
    await maintain(app)
    side = [
        asyncio.create_task(listen(app, wake), name="fila-listen"),
        asyncio.create_task(_maintenance_loop(app), name="fila-maintenance"),
        asyncio.create_task(lease.run(), name="fila-lease"),
        # closed breakers let sends through without a round trip while it hears
        asyncio.create_task(breaker.watch(app), name="breaker-watch"),
    ]
    stopping = asyncio.create_task(stop.wait())
    try:
        while not stop.is_set():
            drained = False
            while len(in_flight) < MAX_BATCHES and not stop.is_set():
                wake.clear()
                try:
                    batch = await queue.claim(app, worker_id, s.worker_batch_size)
                except Exception as exc:
                    log.error("fila.claim_failed", error=str(exc))
                    drained = True
                    break
                if batch:
                    lease.hold(m.id for m in batch)  # renewed from the claim on
                    task = asyncio.create_task(
                        send.process_batch(app, worker_id, batch, gate=gate, lease=lease)
                    )
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                    task.add_done_callback(lambda t: _account(app, t))
                if len(batch) < s.worker_batch_size:
                    drained = True
                    break
            if stop.is_set():
                break
            waiting: set[asyncio.Future[Any]] = {stopping, *in_flight}
            waker = asyncio.create_task(wake.wait())
            if drained:
                waiting.add(waker)
            await asyncio.wait(
                waiting,
                timeout=s.worker_poll_interval_s if drained else None,
                return_when=asyncio.FIRST_COMPLETED,
            )
            waker.cancel()
    finally:
        stopping.cancel()
        for t in side:
            t.cancel()
        await _drain(app, worker_id, in_flight)


async def _drain(app: App, worker_id: str, in_flight: set[asyncio.Task[Any]]) -> None:
    """Give in-flight sends the grace period, cancel the rest, release what is held."""
    if in_flight:
        log.info("fila.draining", worker=worker_id, batches=len(in_flight))
        _, pending = await asyncio.wait(set(in_flight), timeout=app.settings.worker_grace_s)
        for t in pending:
            t.cancel()
        for t in pending:
            with contextlib.suppress(BaseException):
                await t
    try:
        await queue.release_worker(app, worker_id)
    except Exception as exc:  # the lease will expire and the rescue will do it
        log.error("fila.release_failed", worker=worker_id, error=str(exc))
