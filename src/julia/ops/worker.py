"""``julia worker``: one long-running process that runs the consumers, and proves it is alive.

The consumers are an explicit registry: each is a coroutine
``run(app, stop: asyncio.Event, worker_id: str)`` that works until ``stop`` is
set and then finishes cleanly. Adding one is one line in :data:`CONSUMERS`.

The worker registers itself (a ``workers`` row), beats every
``JULIA_WORKER_HEARTBEAT_S`` into Postgres and into Redis (a key with a
``JULIA_WORKER_HEARTBEAT_TTL_S`` TTL, 120 s by default), restarts a consumer that
crashes, and on SIGTERM/SIGINT sets ``stop``, lets the consumers drain, and
returns (the CLI exits 0). With Redis down the Postgres beat still runs; a
worker is considered alive by its Postgres row.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from julia.core.app import App
from julia.core.errors import InvalidInput
from julia.core.logs import get_logger
from julia.handoff import webhooks as handoff_webhooks
from julia.inbox import consumer as inbox_consumer
from julia.ops import heartbeat, monitors
from julia.outbound import consumer as fila_consumer

log = get_logger(__name__)

Consumer = Callable[[App, asyncio.Event, str], Awaitable[None]]

#: Every consumer ``julia worker`` can run, by name, in start order.
CONSUMERS: dict[str, Consumer] = {
    "fila": fila_consumer.run,
    "inbox": inbox_consumer.run,
    "handoff": handoff_webhooks.run,  # Chatwoot webhooks: operator replies, the way back
    "ops": monitors.worker_consumer,  # metrics, and watches the scheduler
}

#: Seconds before a crashed consumer is started again.
RESTART_DELAY_S = 2.0


async def _supervise(
    app: App, name: str, run: Consumer, stop: asyncio.Event, worker_id: str
) -> None:
    """Run one consumer; if it crashes, log it and start it again."""
    while not stop.is_set():
        try:
            await run(app, stop, worker_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error(
                "worker.consumer_crashed", consumer=name, error=f"{type(exc).__name__}: {exc}"
            )
            try:
                await asyncio.wait_for(stop.wait(), RESTART_DELAY_S)
            except TimeoutError:
                continue
        else:
            return


async def run_worker(
    app: App,
    *,
    concurrency: int | None = None,
    batch_size: int | None = None,
    consumers: Sequence[str] | None = None,
    name: str | None = None,
    stop: asyncio.Event | None = None,
    handle_signals: bool = True,
) -> str:
    """Run the worker until SIGTERM/SIGINT (or ``stop``); returns its id after a clean stop."""
    names = list(consumers or CONSUMERS)
    unknown = [n for n in names if n not in CONSUMERS]
    if unknown:
        raise InvalidInput(
            f"unknown consumer(s) {', '.join(unknown)}; known: {', '.join(CONSUMERS)}"
        )
    overrides: dict[str, Any] = {}
    if concurrency is not None:
        overrides["worker_concurrency"] = concurrency
    if batch_size is not None:
        overrides["worker_batch_size"] = batch_size
    if overrides:
        app = dataclasses.replace(app, settings=app.settings.model_copy(update=overrides))
    worker_id = heartbeat.new_worker_id(name)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    if handle_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    await heartbeat.register(app, worker_id, names)
    log.info(
        "worker.started", worker=worker_id, consumers=names,
        concurrency=app.settings.worker_concurrency, batch_size=app.settings.worker_batch_size,
    )  # fmt: skip
    heart = asyncio.create_task(heartbeat.loop(app, worker_id))
    try:
        await asyncio.gather(*(_supervise(app, n, CONSUMERS[n], stop, worker_id) for n in names))
    finally:
        heart.cancel()
        await heartbeat.unregister(app, worker_id)
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        log.info("worker.stopped", worker=worker_id)
    return worker_id
