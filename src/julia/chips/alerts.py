"""Pool alerts: rows in the ``alerts`` table, the same alert at most once per
``JULIA_CHIP_ALERT_REPEAT_MIN`` (30 minutes). Slack delivery is the Operations issue's."""

from __future__ import annotations

import zlib
from datetime import timedelta
from typing import Any

from psycopg.types.json import Jsonb

from julia.app import App
from julia.logs import get_logger

log = get_logger(__name__)


async def raise_alert(
    app: App,
    kind: str,
    severity: str,
    message: str,
    *,
    key: str | None = None,
    details: dict[str, Any] | None = None,
) -> bool:
    """Write one alert unless the same ``kind``/``key`` was raised within the repeat window.
    True when written. Concurrent callers are serialised on an advisory lock of the key."""
    key = key or kind
    now = app.clock.now()
    since = now - timedelta(minutes=app.settings.chip_alert_repeat_min)
    async with app.pool.connection() as conn, conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(%s)", (zlib.crc32(f"alert:{key}".encode()),)
        )
        cur = await conn.execute(
            "SELECT 1 FROM alerts WHERE kind = %s AND details->>'key' = %s AND created_at > %s"
            " LIMIT 1",
            (kind, key, since),
        )
        if await cur.fetchone() is not None:
            log.info("chip.alert_suppressed", kind=kind, key=key)
            return False
        await conn.execute(
            "INSERT INTO alerts (kind, severity, message, details, created_at)"
            " VALUES (%s, %s, %s, %s, %s)",
            (kind, severity, message, Jsonb((details or {}) | {"key": key}), now),
        )
    log.warning("chip.alert", kind=kind, severity=severity, key=key, alert=message)
    return True


async def recent(app: App, kind_prefix: str = "chip", limit: int = 50) -> list[dict[str, Any]]:
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, kind, severity, message, details, created_at FROM alerts"
            " WHERE kind LIKE %s ORDER BY id DESC LIMIT %s",
            (kind_prefix + "%", limit),
        )
        return list(await cur.fetchall())
