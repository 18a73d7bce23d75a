"""Open shifts (vagas): import (creating hospitals and specialties by name) and list."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from julia.core import audit
from julia.core.app import App
from julia.core.errors import Conflict, InvalidInput, NotFound
from julia.core.importing import ImportResult, Progress, read_csv, required, validate_rows
from julia.domain.medicos import ensure_especialidades

COLUMNS_REQUIRED = {"hospital", "especialidade", "data", "inicio", "fim", "valor"}
COLUMNS_OPTIONAL = {"periodo", "id_externo"}
PERIODOS = ("manha", "tarde", "noite", "diurno", "noturno", "integral")
STATUSES = ("aberta", "reservada", "confirmada", "cancelada")


@dataclass(frozen=True)
class Vaga:
    id: int
    id_externo: str | None
    hospital: str
    especialidade: str
    data: date
    inicio: time
    fim: time
    periodo: str
    valor: Decimal
    status: str
    reservada_por: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class VagaRow:
    hospital: str
    especialidade: str
    data: date
    inicio: time
    fim: time
    valor: Decimal
    periodo: str
    id_externo: str | None


def periodo_of(inicio: time, fim: time) -> str:
    """The part of the day a shift covers, when the file does not say."""
    hours = ((fim.hour * 60 + fim.minute) - (inicio.hour * 60 + inicio.minute)) % (24 * 60) / 60
    if hours == 0 or hours >= 24:
        return "integral"
    if hours >= 12:
        return "diurno" if 5 <= inicio.hour < 17 else "noturno"
    if 5 <= inicio.hour < 12:
        return "manha"
    if 12 <= inicio.hour < 18:
        return "tarde"
    return "noite"


def _time(value: str, column: str) -> time:
    try:
        return datetime.strptime(value, "%H:%M").time()
    except ValueError:
        raise InvalidInput(f"{column} {value!r} is not a time HH:MM") from None


def parse_row(row: dict[str, str]) -> VagaRow:
    try:
        data = date.fromisoformat(required(row, "data"))
    except ValueError:
        raise InvalidInput(f"data {row['data']!r} is not a date YYYY-MM-DD") from None
    inicio = _time(required(row, "inicio"), "inicio")
    fim = _time(required(row, "fim"), "fim")
    try:
        valor = Decimal(required(row, "valor").replace(",", "."))
    except InvalidOperation:
        raise InvalidInput(f"valor {row['valor']!r} is not a number") from None
    if valor < 0 or not valor.is_finite():
        raise InvalidInput(f"valor {row['valor']!r} must be zero or more")
    periodo = (row.get("periodo") or "").lower() or periodo_of(inicio, fim)
    if periodo not in PERIODOS:
        raise InvalidInput(f"periodo {periodo!r} is not one of {', '.join(PERIODOS)}")
    return VagaRow(
        hospital=required(row, "hospital"),
        especialidade=required(row, "especialidade"),
        data=data,
        inicio=inicio,
        fim=fim,
        valor=valor,
        periodo=periodo,
        id_externo=row.get("id_externo") or None,
    )


def _natural_key(r: VagaRow) -> object:
    if r.id_externo:
        return ("ext", r.id_externo)
    return (r.hospital.lower(), r.especialidade.lower(), r.data, r.inicio, r.fim)


_UPSERT = """
WITH stage AS (
    SELECT s.*, h.id AS hospital_id, e.id AS especialidade_id
    FROM _vagas_stage s
    JOIN hospitais h ON lower(h.nome) = lower(s.hospital)
    JOIN especialidades e ON lower(e.nome) = lower(s.especialidade)
), matched AS (
    SELECT s.line, v.id AS vaga_id FROM stage s JOIN vagas v
      ON (s.id_externo IS NOT NULL AND v.id_externo = s.id_externo)
      OR (s.id_externo IS NULL AND v.id_externo IS NULL AND v.hospital_id = s.hospital_id
          AND v.especialidade_id = s.especialidade_id AND v.data = s.data
          AND v.inicio = s.inicio AND v.fim = s.fim)
), updated AS (
    UPDATE vagas v SET hospital_id = s.hospital_id, especialidade_id = s.especialidade_id,
        data = s.data, inicio = s.inicio, fim = s.fim, periodo = s.periodo, valor = s.valor,
        updated_at = %(now)s
    FROM stage s JOIN matched m ON m.line = s.line
    WHERE v.id = m.vaga_id
    RETURNING v.id
), inserted AS (
    INSERT INTO vagas (id_externo, hospital_id, especialidade_id, data, inicio, fim, periodo,
                       valor, created_at, updated_at)
    SELECT s.id_externo, s.hospital_id, s.especialidade_id, s.data, s.inicio, s.fim, s.periodo,
           s.valor, %(now)s, %(now)s
    FROM stage s WHERE s.line NOT IN (SELECT line FROM matched)
    RETURNING id
)
SELECT (SELECT count(*) FROM inserted) AS inserted, (SELECT count(*) FROM updated) AS updated
"""


async def import_vagas(
    app: App,
    path: Path,
    *,
    skip_invalid: bool = False,
    actor: audit.Actor | None = None,
    progress: Progress | None = None,
) -> ImportResult:
    """Import shifts; hospitals and specialties are created by name when new."""
    _, rows = read_csv(path, required=COLUMNS_REQUIRED, optional=COLUMNS_OPTIONAL)
    good, errors = validate_rows(
        path, rows, parse_row, key=_natural_key, skip_invalid=skip_invalid, progress=progress
    )
    result = ImportResult(path=str(path), total=len(rows), skipped=errors)
    now = app.clock.now()
    async with app.pool.connection() as conn, conn.transaction():
        await conn.execute(
            "CREATE TEMP TABLE _vagas_stage (line int, hospital text, especialidade text,"
            " data date, inicio time, fim time, valor numeric, periodo text, id_externo text)"
            " ON COMMIT DROP"
        )
        async with conn.cursor().copy("COPY _vagas_stage FROM STDIN") as copy:
            for line, r in good:
                await copy.write_row(
                    (line, r.hospital, r.especialidade, r.data, r.inicio, r.fim, r.valor,
                     r.periodo, r.id_externo)
                )  # fmt: skip
        await ensure_especialidades(conn, {r.especialidade for _, r in good})
        await conn.execute(
            "INSERT INTO hospitais (nome) SELECT DISTINCT ON (lower(n)) n"
            " FROM unnest(%s::text[]) AS n ON CONFLICT (lower(nome)) DO NOTHING",
            (sorted({r.hospital for _, r in good}),),
        )
        cur = await conn.execute(_UPSERT, {"now": now})
        counts = await cur.fetchone()
        assert counts is not None
        result.inserted, result.updated = counts["inserted"], counts["updated"]
        await audit.record(
            conn,
            now,
            actor or audit.Actor.of(app),
            "vagas.import",
            alvo=path.name,
            detalhes={"inserted": result.inserted, "updated": result.updated,
                      "skipped": len(errors)},
        )  # fmt: skip
    if progress:
        progress(len(good), len(good))
    return result


async def list_vagas(app: App, *, status: str | None = None, limit: int = 100) -> list[Vaga]:
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status {status!r} is not one of {', '.join(STATUSES)}")
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT v.id, v.id_externo, h.nome AS hospital, e.nome AS especialidade, v.data,"
            " v.inicio, v.fim, v.periodo, v.valor, v.status, v.reservada_por FROM vagas v"
            " JOIN hospitais h ON h.id = v.hospital_id"
            " JOIN especialidades e ON e.id = v.especialidade_id"
            " WHERE %(s)s::text IS NULL OR v.status = %(s)s"
            " ORDER BY v.data, v.inicio, v.id LIMIT %(limit)s",
            {"s": status, "limit": limit},
        )
        return [Vaga(**row) for row in await cur.fetchall()]


# --- reservation (the agent's reservar_vaga and `julia vagas reservar|confirmar|cancelar`) ---

_SELECT = (
    "SELECT v.id, v.id_externo, h.nome AS hospital, e.nome AS especialidade, v.data,"
    " v.inicio, v.fim, v.periodo, v.valor, v.status, v.reservada_por FROM vagas v"
    " JOIN hospitais h ON h.id = v.hospital_id"
    " JOIN especialidades e ON e.id = v.especialidade_id"
)
#: What may follow what: reservar (aberta→reservada), confirmar (reservada→confirmada),
#: cancelar (a reservation back to aberta, or an open shift to cancelada).
_MOVES = {"reservar": ("aberta",), "confirmar": ("reservada",),
          "cancelar": ("reservada", "confirmada", "aberta")}  # fmt: skip


class VagaGone(Conflict):
    """The shift is no longer available (taken, changed, or locked by another reservation)."""


async def get_vaga(app: App, vaga_id: int) -> Vaga:
    async with app.pool.connection() as conn:
        cur = await conn.execute(_SELECT + " WHERE v.id = %s", (vaga_id,))
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no vaga {vaga_id}")
    return Vaga(**row)


async def move(
    app: App,
    vaga_id: int,
    acao: str,
    *,
    medico_id: int | None = None,
    unchanged_since: datetime | None = None,
    actor: audit.Actor | None = None,
    motivo: str | None = None,
    conn: AsyncConnection[Any] | None = None,
) -> Vaga:
    """Reserve, confirm or cancel one shift in one transaction: ``FOR UPDATE NOWAIT``
    (a shift another reservation is holding is :class:`VagaGone` at once, never a
    wait), the status checked, ``unchanged_since`` (the shift's ``updated_at`` when it
    was offered) compared, a business event written, and an audit row when ``actor``."""
    if acao not in _MOVES:
        raise InvalidInput(f"acao {acao!r} is not one of {', '.join(_MOVES)}")
    if acao == "reservar" and medico_id is None:
        raise InvalidInput("a reservation needs the doctor")
    if conn is None:
        async with app.pool.connection() as own, own.transaction():
            return await _move_in(own, app, vaga_id, acao, medico_id, unchanged_since, actor,
                                  motivo)  # fmt: skip
    return await _move_in(conn, app, vaga_id, acao, medico_id, unchanged_since, actor, motivo)


async def _move_in(
    conn: AsyncConnection[Any],
    app: App,
    vaga_id: int,
    acao: str,
    medico_id: int | None,
    unchanged_since: datetime | None,
    actor: audit.Actor | None,
    motivo: str | None,
) -> Vaga:
    now = app.clock.now()
    try:
        async with conn.transaction():
            cur = await conn.execute(
                "SELECT status, reservada_por, updated_at FROM vagas WHERE id = %s"
                " FOR UPDATE NOWAIT",
                (vaga_id,),
            )
            row = await cur.fetchone()
    except psycopg.errors.LockNotAvailable:
        raise VagaGone(f"vaga {vaga_id} is being reserved by someone else") from None
    if row is None:
        raise NotFound(f"no vaga {vaga_id}")
    if row["status"] not in _MOVES[acao]:
        raise VagaGone(f"vaga {vaga_id} is {row['status']}, cannot {acao}")
    if unchanged_since is not None and row["updated_at"] != unchanged_since:
        raise VagaGone(f"vaga {vaga_id} changed since it was offered")
    status = {"reservar": "reservada", "confirmar": "confirmada"}.get(acao) or (
        "cancelada" if row["status"] == "aberta" else "aberta")  # fmt: skip
    por = medico_id if acao == "reservar" else row["reservada_por"] if acao == "confirmar" else None
    await conn.execute(
        "UPDATE vagas SET status = %(s)s, reservada_por = %(p)s, reservada_em = CASE %(s)s"
        " WHEN 'reservada' THEN %(now)s WHEN 'confirmada' THEN reservada_em END,"
        " updated_at = %(now)s WHERE id = %(id)s",
        {"s": status, "p": por, "now": now, "id": vaga_id},
    )
    event = {"reservar": "vaga_reservada", "confirmar": "vaga_confirmada",
             "cancelar": "vaga_cancelada"}[acao]  # fmt: skip
    await conn.execute(
        "INSERT INTO business_events (tipo, medico_id, vaga_id, props, created_at)"
        " VALUES (%s, %s, %s, %s, %s)",
        (event, por or row["reservada_por"], vaga_id,
         Jsonb({"de": row["status"], "para": status, "motivo": motivo}), now),
    )  # fmt: skip
    if actor is not None:
        await audit.record(
            conn, now, actor, f"vagas.{acao}", alvo=str(vaga_id), motivo=motivo,
            detalhes={"de": row["status"], "para": status, "medico_id": por},
        )  # fmt: skip
    cur = await conn.execute(_SELECT + " WHERE v.id = %s", (vaga_id,))
    found = await cur.fetchone()
    assert found is not None
    return Vaga(**found)
