"""Seeding doctors and past sends for the campaign tests and benchmark (one COPY each)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from julia.core.app import App


def phone(i: int) -> str:
    return f"+55119{i:08d}"


async def seed_medicos(
    app: App,
    n: int,
    *,
    opted_out_every: int = 0,
    especialidade: str = "Cardiologia",
    cidade: str | None = "São Paulo",
    uf: str = "SP",
    tags: list[str] | None = None,
) -> list[int]:
    """``n`` doctors (one in ``opted_out_every`` opted out); returns their ids in order."""
    now = app.clock.now()
    async with app.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "INSERT INTO especialidades (nome) VALUES (%s) ON CONFLICT (lower(nome))"
            " DO UPDATE SET nome = EXCLUDED.nome RETURNING id",
            (especialidade,),
        )
        esp = (await cur.fetchone() or {})["id"]
        async with conn.cursor().copy(
            "COPY medicos (telefone, nome, especialidade_id, uf, cidade, tags, opted_out,"
            " opted_out_em, opted_out_motivo, created_at, updated_at) FROM STDIN"
        ) as copy:
            for i in range(n):
                out = bool(opted_out_every) and i % opted_out_every == 0
                await copy.write_row((
                    phone(i), f"Dra. Ana {i} Souza" if i % 2 else f"Dr. João {i}", esp, uf,
                    cidade, tags or [], out, now if out else None, "pare" if out else None,
                    now, now,
                ))  # fmt: skip
        cur = await conn.execute(
            "SELECT id FROM medicos WHERE telefone = ANY(%s) ORDER BY id",
            ([phone(i) for i in range(n)],),
        )
        return [r["id"] for r in await cur.fetchall()]


async def seed_sent(app: App, medico_ids: list[int], at: datetime) -> None:
    """One sent message to each of these doctors at ``at`` (their last contact)."""
    async with app.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO fila_mensagens (medico_id, telefone, tipo, texto, agendar_para,"
            " proxima_tentativa_em, status, outcome, created_at, updated_at, enviada_em)"
            " SELECT m.id, m.telefone, 'prospeccao', 'oi', %(at)s, %(at)s, 'enviada', 'SENT',"
            " %(at)s, %(at)s, %(at)s FROM medicos m WHERE m.id = ANY(%(ids)s)",
            {"at": at, "ids": medico_ids},
        )


async def count(app: App, sql: str, *params: Any) -> int:
    async with app.pool.connection() as conn:
        cur = await conn.execute(sql, params)
        row = await cur.fetchone()
    return int(next(iter(row.values()))) if row else 0


__all__ = ["count", "phone", "seed_medicos", "seed_sent", "timedelta"]
