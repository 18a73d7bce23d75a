"""Workers' heartbeats: each ``julia worker`` registers a ``workers`` row and beats
into Postgres and Redis; health and the monitors read them here.

A worker beats every ``JULIA_WORKER_HEARTBEAT_S`` into Postgres and into Redis (a key
with a ``JULIA_WORKER_HEARTBEAT_TTL_S`` TTL). With Redis down the Postgres beat still
runs; a worker is considered alive by its Postgres row.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb

from julia.core.app import App
from julia.core.logs import get_logger
from julia.outbound import consumer as fila_consumer

log = get_logger(__name__)


@dataclass(frozen=True)
class WorkerInfo:
    id: str
    hostname: str
    pid: int
    consumers: list[str]
    concurrency: int | None
    started_at: datetime
    last_beat_at: datetime
    stopped_at: datetime | None
    processed: int
    failed: int
    state: str  # alive | dead (no beat within the TTL) | stopped
    age_s: float  # seconds since the last beat
    redis_beat: bool | None  # the Redis key exists (None: Redis unavailable)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def new_worker_id(name: str | None = None) -> str:
    return name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _redis_key(app: App, worker_id: str) -> str:
    return app.keys.key("worker", worker_id)


async def register(app: App, worker_id: str, consumers: Sequence[str]) -> None:
    now = app.clock.now()
    async with app.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO workers (id, hostname, pid, consumers, concurrency, started_at,"
            " last_beat_at) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (id) DO UPDATE SET started_at = EXCLUDED.started_at,"
            " last_beat_at = EXCLUDED.last_beat_at, stopped_at = NULL, pid = EXCLUDED.pid,"
            " consumers = EXCLUDED.consumers, concurrency = EXCLUDED.concurrency",
            (worker_id, socket.gethostname(), os.getpid(), list(consumers),
             app.settings.worker_concurrency, now, now),
        )  # fmt: skip


async def beat(app: App, worker_id: str) -> None:
    """One heartbeat: the Postgres row, then the Redis key (best effort)."""
    now = app.clock.now()
    totals = dict(fila_consumer.counters(app))
    processed = sum(v for k, v in totals.items() if not k.endswith(("retried", "dead")))
    failed = sum(v for k, v in totals.items() if k.endswith(("retried", "dead")))
    try:
        async with app.pool.connection() as conn:
            await conn.execute(
                "UPDATE workers SET last_beat_at = %s, processed = %s, failed = %s, details = %s"
                " WHERE id = %s",
                (now, processed, failed, Jsonb(totals), worker_id),
            )
    except Exception as exc:
        log.error("worker.beat_failed", worker=worker_id, store="postgres", error=str(exc))
    try:
        await app.redis.set(
            _redis_key(app, worker_id),
            json.dumps({"at": now.isoformat(), "pid": os.getpid(), **totals}),
            ex=app.settings.worker_heartbeat_ttl_s,
        )
    except Exception as exc:
        log.warning("worker.beat_failed", worker=worker_id, store="redis", error=str(exc))


async def loop(app: App, worker_id: str) -> None:
    while True:
        await beat(app, worker_id)
        await asyncio.sleep(app.settings.worker_heartbeat_s)


async def unregister(app: App, worker_id: str) -> None:
    try:
        async with app.pool.connection() as conn:
            await conn.execute(
                "UPDATE workers SET stopped_at = %s, last_beat_at = %s WHERE id = %s",
                (app.clock.now(), app.clock.now(), worker_id),
            )
    except Exception as exc:
        log.error("worker.unregister_failed", worker=worker_id, error=str(exc))
    try:
        await app.redis.delete(_redis_key(app, worker_id))
    except Exception as exc:
        log.warning("worker.unregister_failed", worker=worker_id, error=str(exc))


async def workers_status(app: App, *, include_stopped: bool = False) -> list[WorkerInfo]:
    """Workers and their last beat: alive, dead (silent past the TTL) or stopped."""
    now = app.clock.now()
    ttl = app.settings.worker_heartbeat_ttl_s
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, hostname, pid, consumers, concurrency, started_at, last_beat_at,"
            " stopped_at, processed, failed FROM workers"
            " WHERE %(all)s OR (stopped_at IS NULL AND last_beat_at > %(since)s)"
            " ORDER BY last_beat_at DESC",
            {"all": include_stopped, "since": now - timedelta(days=1)},
        )
        rows = list(await cur.fetchall())
    redis_keys: list[bool] | None
    try:
        redis_keys = [bool(await app.redis.exists(_redis_key(app, r["id"]))) for r in rows]
    except Exception:
        redis_keys = None
    out = []
    for i, r in enumerate(rows):
        age = (now - r["last_beat_at"]).total_seconds()
        state = "stopped" if r["stopped_at"] else ("alive" if age <= ttl else "dead")
        out.append(
            WorkerInfo(**r, state=state, age_s=round(age, 1),
                       redis_beat=None if redis_keys is None else redis_keys[i])
        )  # fmt: skip
    return out
