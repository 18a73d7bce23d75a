"""The audit log: who changed what, why, and when. One row per operator action."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from julia.core.app import App


@dataclass(frozen=True)
class Actor:
    """Who acts: an operator's name (``--operador`` / ``JULIA_OPERATOR``) or an automation."""

    name: str

    @classmethod
    def of(cls, app: App, operador: str | None = None) -> Actor:
        return cls(operador or app.settings.operator)


AUTOMATION = Actor("automation")


async def record(
    conn: AsyncConnection[Any],
    at: datetime,
    actor: Actor,
    acao: str,
    alvo: str | None = None,
    motivo: str | None = None,
    detalhes: dict[str, Any] | None = None,
) -> None:
    """Write one audit row inside the caller's transaction, so it lands with the change."""
    await conn.execute(
        "INSERT INTO audit_log (at, operador, acao, alvo, motivo, detalhes)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (at, actor.name, acao, alvo, motivo, Jsonb(detalhes or {})),
    )


async def recent(app: App, limit: int = 50, acao: str | None = None) -> list[dict[str, Any]]:
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT at, operador, acao, alvo, motivo, detalhes FROM audit_log"
            " WHERE %(acao)s::text IS NULL OR acao = %(acao)s ORDER BY at DESC, id DESC"
            " LIMIT %(limit)s",
            {"acao": acao, "limit": limit},
        )
        return list(await cur.fetchall())
