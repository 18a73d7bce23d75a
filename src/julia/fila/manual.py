"""Operators' manual messages: one from the command line, or many from a CSV file.

The file has columns ``telefone, texto`` and optionally ``tipo``,
``idempotency_key``, ``prioridade`` and ``agendar_para``. Like the imports, a file
with any bad row is rejected whole (every bad line named) and nothing is queued.
"""

from __future__ import annotations

from pathlib import Path

from julia.core import audit, phones
from julia.core.app import App
from julia.core.errors import InvalidInput
from julia.core.importing import read_csv, required, validate_rows
from julia.fila.queue import TIPOS, EnqueueManyResult, NewMessage, enqueue_many, parse_when

COLUMNS_REQUIRED = {"telefone", "texto"}
COLUMNS_OPTIONAL = {"tipo", "idempotency_key", "prioridade", "agendar_para"}


def _parse_row(app: App, row: dict[str, str]) -> NewMessage:
    tipo = row.get("tipo") or "humano"
    if tipo not in TIPOS:
        raise InvalidInput(f"tipo {tipo!r} is not one of {', '.join(TIPOS)}")
    prioridade = None
    if row.get("prioridade"):
        try:
            prioridade = int(row["prioridade"])
        except ValueError:
            raise InvalidInput(f"prioridade {row['prioridade']!r} is not a number") from None
        if not 0 <= prioridade <= 10:
            raise InvalidInput(f"prioridade {prioridade} is not between 0 and 10")
    now = app.clock.now()
    return NewMessage(
        telefone=phones.normalize(required(row, "telefone")),
        texto=required(row, "texto"),
        tipo=tipo,
        prioridade=prioridade,
        agendar_para=parse_when(row.get("agendar_para") or None, app.settings.timezone, now),
        idempotency_key=row.get("idempotency_key") or None,
    )


async def enqueue_file(
    app: App, path: Path, *, actor: audit.Actor | None = None
) -> EnqueueManyResult:
    """Queue every row of a CSV in one bulk insert, or none if any row is bad."""
    _, rows = read_csv(path, required=COLUMNS_REQUIRED, optional=COLUMNS_OPTIONAL)
    good, _ = validate_rows(
        path,
        rows,
        lambda r: _parse_row(app, r),
        key=lambda m: m.idempotency_key or object(),
        skip_invalid=None,  # all rows or none: `fila enqueue` has no --skip-invalid
    )
    if not good:
        raise InvalidInput(f"{path}: no rows to enqueue")
    return await enqueue_many(
        app, [m for _, m in good], actor=actor or audit.Actor.of(app), alvo=path.name
    )
