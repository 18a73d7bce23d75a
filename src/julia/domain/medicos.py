"""Doctors (medicos): import, list, look up, opt-out."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection

from julia.core import audit, erased, phones
from julia.core.app import App
from julia.core.errors import InvalidInput, NotFound
from julia.core.importing import ImportResult, Pipeline, Progress, required, run_import

COLUMNS_REQUIRED = {"nome", "telefone"}
COLUMNS_OPTIONAL = {"crm", "especialidade", "uf", "cidade", "tags", "id_externo"}

_SELECT = """
SELECT m.id, m.telefone, m.nome, m.crm, e.nome AS especialidade, m.uf, m.cidade, m.tags,
       m.id_externo, m.opted_out, m.opted_out_em, m.opted_out_motivo, m.created_at
FROM medicos m LEFT JOIN especialidades e ON e.id = m.especialidade_id
"""


@dataclass(frozen=True)
class Medico:
    id: int
    telefone: str
    nome: str
    crm: str | None
    especialidade: str | None
    uf: str | None
    cidade: str | None
    tags: list[str]
    id_externo: str | None
    opted_out: bool
    opted_out_em: datetime | None
    opted_out_motivo: str | None
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MedicoRow:
    """One validated row of a doctors file."""

    telefone: str
    nome: str
    crm: str | None
    especialidade: str | None
    uf: str | None
    cidade: str | None
    tags: list[str]
    id_externo: str | None


#: Titles written before a doctor's name ("Dra. Ana Souza"): not a first name.
_TITLES = frozenset({"dr", "dra", "doutor", "doutora", "prof", "profa", "sr", "sra"})


def first_name(nome: str | None) -> str | None:
    """How a message greets the doctor: the first word of the name that is not a title
    ("Dra. Ana Souza" → "Ana"); None when the name has nothing else."""
    for word in (nome or "").split():
        if word.rstrip(".").casefold() not in _TITLES:
            return word
    return None


def parse_row(row: dict[str, str]) -> MedicoRow:
    uf = row.get("uf") or None
    if uf is not None and (len(uf) != 2 or not (uf.isascii() and uf.isalpha())):
        raise InvalidInput(f"uf {uf!r} is not a two-letter state")
    return MedicoRow(
        telefone=phones.normalize(required(row, "telefone")),
        nome=required(row, "nome"),
        crm=row.get("crm") or None,
        especialidade=row.get("especialidade") or None,
        uf=uf.upper() if uf else None,
        cidade=row.get("cidade") or None,
        tags=[t.strip() for t in (row.get("tags") or "").split(";") if t.strip()],
        id_externo=row.get("id_externo") or None,
    )


async def ensure_especialidades(conn: AsyncConnection[Any], names: set[str]) -> None:
    """Create the specialties named, matching case-insensitively."""
    if names:
        await conn.execute(
            "INSERT INTO especialidades (nome) SELECT DISTINCT ON (lower(n)) n"
            " FROM unnest(%s::text[]) AS n ON CONFLICT (lower(nome)) DO NOTHING",
            (sorted(names),),
        )


#: Why a row with a phone erased by ``julia medicos esquecer`` is refused.
ERASED = "telefone was erased under LGPD (julia medicos esquecer): it is not imported again"

# Rows the upsert would break medicos' unique keys with, named by line: an id_externo
# moved onto another doctor's phone, or a phone whose doctor has another id_externo;
# and rows whose phone was erased (only its keyed hash is kept).
_CONFLICTS = f"""
SELECT s.line, '{ERASED}' AS reason
FROM _medicos_stage s
WHERE EXISTS (SELECT 1 FROM medicos_esquecidos e
              WHERE e.telefone_hash = {erased.hash_sql("s.telefone")})
UNION ALL
SELECT s.line, 'id_externo ' || s.id_externo || ' is doctor #' || x.id
       || ', but this telefone belongs to doctor #' || y.id AS reason
FROM _medicos_stage s
JOIN medicos x ON x.id_externo = s.id_externo
JOIN medicos y ON y.telefone = s.telefone AND y.id <> x.id
UNION ALL
SELECT s.line, 'telefone belongs to doctor #' || y.id || ', whose id_externo is '
       || y.id_externo || ', not ' || s.id_externo AS reason
FROM _medicos_stage s
JOIN medicos y ON y.telefone = s.telefone
WHERE s.id_externo IS NOT NULL AND y.id_externo IS NOT NULL AND y.id_externo <> s.id_externo
  AND NOT EXISTS (SELECT 1 FROM medicos x WHERE x.id_externo = s.id_externo)
ORDER BY line
"""

_UPSERT = """
WITH by_ext AS (
    UPDATE medicos m SET telefone = s.telefone, nome = s.nome, crm = s.crm,
        especialidade_id = e.id, uf = s.uf, cidade = s.cidade, tags = s.tags, updated_at = %(now)s
    FROM _medicos_stage s LEFT JOIN especialidades e ON lower(e.nome) = lower(s.especialidade)
    WHERE s.id_externo IS NOT NULL AND m.id_externo = s.id_externo
    RETURNING s.line
), by_phone AS (
    INSERT INTO medicos AS m (telefone, nome, crm, especialidade_id, uf, cidade, tags, id_externo,
                              created_at, updated_at)
    SELECT s.telefone, s.nome, s.crm, e.id, s.uf, s.cidade, s.tags, s.id_externo, %(now)s, %(now)s
    FROM _medicos_stage s LEFT JOIN especialidades e ON lower(e.nome) = lower(s.especialidade)
    WHERE s.id_externo IS NULL
       OR NOT EXISTS (SELECT 1 FROM medicos x WHERE x.id_externo = s.id_externo)
    ON CONFLICT (telefone) DO UPDATE SET nome = EXCLUDED.nome,
        crm = COALESCE(EXCLUDED.crm, m.crm),
        especialidade_id = COALESCE(EXCLUDED.especialidade_id, m.especialidade_id),
        uf = COALESCE(EXCLUDED.uf, m.uf), cidade = COALESCE(EXCLUDED.cidade, m.cidade),
        tags = EXCLUDED.tags, id_externo = COALESCE(EXCLUDED.id_externo, m.id_externo),
        updated_at = EXCLUDED.updated_at
    RETURNING (xmax = 0) AS inserted
)
SELECT (SELECT count(*) FILTER (WHERE inserted) FROM by_phone) AS inserted,
       (SELECT count(*) FROM by_ext)
       + (SELECT count(*) FILTER (WHERE NOT inserted) FROM by_phone) AS updated
"""


async def _prepare(conn: AsyncConnection[Any], rows: list[MedicoRow]) -> None:
    await ensure_especialidades(conn, {r.especialidade for r in rows if r.especialidade})


PIPELINE: Pipeline[MedicoRow] = Pipeline(
    name="medicos",
    required=COLUMNS_REQUIRED,
    optional=COLUMNS_OPTIONAL,
    parse=parse_row,
    unique={"telefone": lambda r: r.telefone, "id_externo": lambda r: r.id_externo},
    stage_columns="telefone text, nome text, crm text, especialidade text, uf text,"
    " cidade text, tags text[], id_externo text",
    values=lambda r: (
        r.telefone,
        r.nome,
        r.crm,
        r.especialidade,
        r.uf,
        r.cidade,
        r.tags,
        r.id_externo,
    ),
    upsert=_UPSERT,
    prepare=_prepare,
    conflicts=_CONFLICTS,
    params=lambda app: {"pepper": erased.pepper(app)},
)


async def import_medicos(
    app: App,
    path: Path,
    *,
    skip_invalid: bool = False,
    actor: audit.Actor | None = None,
    progress: Progress | None = None,
) -> ImportResult:
    """Import a doctors CSV; re-importing updates by ``id_externo``, then by phone."""
    return await run_import(
        app, PIPELINE, path, skip_invalid=skip_invalid, actor=actor, progress=progress
    )


async def get_by_phone(app: App, telefone: str) -> Medico:
    phone = phones.normalize(telefone)
    async with app.pool.connection() as conn:
        cur = await conn.execute(_SELECT + " WHERE m.telefone = %s", (phone,))
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no doctor with phone {telefone}")
    return Medico(**row)


async def list_medicos(
    app: App, *, limit: int = 100, opted_out: bool | None = None
) -> list[Medico]:
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            _SELECT + " WHERE %(o)s::boolean IS NULL OR m.opted_out = %(o)s"
            " ORDER BY m.id LIMIT %(limit)s",
            {"o": opted_out, "limit": limit},
        )
        return [Medico(**row) for row in await cur.fetchall()]


async def optout(
    app: App, telefone: str, *, motivo: str, actor: audit.Actor | None = None
) -> Medico:
    """Record that a doctor asked not to be contacted. Idempotent; keeps the first time."""
    if not motivo.strip():
        raise InvalidInput("an opt-out needs a reason (--motivo)")
    phone = phones.normalize(telefone)
    now = app.clock.now()
    async with app.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "UPDATE medicos SET opted_out = true, opted_out_em = COALESCE(opted_out_em, %s),"
            " opted_out_motivo = COALESCE(opted_out_motivo, %s), updated_at = %s"
            " WHERE telefone = %s RETURNING id",
            (now, motivo, now, phone),
        )
        if await cur.fetchone() is None:
            raise NotFound(f"no doctor with phone {telefone}")
        await audit.record(
            conn, now, actor or audit.Actor.of(app), "medicos.optout", alvo=phone, motivo=motivo
        )
    return await get_by_phone(app, phone)
