"""Open shifts (vagas): import (creating hospitals and specialties by name) and list."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection

from julia.core import audit
from julia.core.app import App
from julia.core.errors import InvalidInput
from julia.core.importing import ImportResult, Pipeline, Progress, required, run_import
from julia.domain.medicos import ensure_especialidades

COLUMNS_REQUIRED = {"hospital", "especialidade", "data", "inicio", "fim", "valor"}
COLUMNS_OPTIONAL = {"periodo", "id_externo"}
PERIODOS = ("manha", "tarde", "noite", "diurno", "noturno", "integral")
STATUSES = ("aberta", "reservada", "confirmada", "cancelada")
#: ``vagas.valor`` is ``numeric(10, 2)``: below 10^8.
VALOR_MAX = Decimal(10**8)


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
    if not valor.is_finite():  # NaN and Infinity parse, but compare only by raising
        raise InvalidInput(f"valor {row['valor']!r} is not a number")
    if valor < 0:
        raise InvalidInput(f"valor {row['valor']!r} must be zero or more")
    if valor >= VALOR_MAX:
        raise InvalidInput(f"valor {row['valor']!r} is over the largest value ({VALOR_MAX - 1})")
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


async def _prepare(conn: AsyncConnection[Any], rows: list[VagaRow]) -> None:
    """Create the specialties and hospitals the file names (matching case-insensitively)."""
    await ensure_especialidades(conn, {r.especialidade for r in rows})
    await conn.execute(
        "INSERT INTO hospitais (nome) SELECT DISTINCT ON (lower(n)) n"
        " FROM unnest(%s::text[]) AS n ON CONFLICT (lower(nome)) DO NOTHING",
        (sorted({r.hospital for r in rows}),),
    )


PIPELINE: Pipeline[VagaRow] = Pipeline(
    name="vagas",
    required=COLUMNS_REQUIRED,
    optional=COLUMNS_OPTIONAL,
    parse=parse_row,
    unique={"": _natural_key},
    stage_columns="hospital text, especialidade text, data date, inicio time, fim time,"
    " valor numeric, periodo text, id_externo text",
    values=lambda r: (
        r.hospital,
        r.especialidade,
        r.data,
        r.inicio,
        r.fim,
        r.valor,
        r.periodo,
        r.id_externo,
    ),
    upsert=_UPSERT,
    prepare=_prepare,
)


async def import_vagas(
    app: App,
    path: Path,
    *,
    skip_invalid: bool = False,
    actor: audit.Actor | None = None,
    progress: Progress | None = None,
) -> ImportResult:
    """Import shifts; hospitals and specialties are created by name when new."""
    return await run_import(
        app, PIPELINE, path, skip_invalid=skip_invalid, actor=actor, progress=progress
    )


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
