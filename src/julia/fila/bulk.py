"""The set-based enqueue for many messages of one type to known doctors (a campaign).

:func:`julia.fila.queue.enqueue_many` validates each row in Python and sends eleven
arrays; a campaign's batch is already validated as a whole (one type, one campaign,
doctors by id), so this path sends four columns and lets one ``INSERT ... SELECT``
take each doctor's phone and opt-out from ``medicos``, answering with counts only.
The arrays go in binary (``%b``): dumping them as text cost more than the insert.
The idempotency key still makes each message once; an opted-out doctor's row is
still inserted ``bloqueada``, as :func:`~julia.fila.queue.enqueue_many` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from julia.core.app import App
from julia.core.errors import InvalidInput
from julia.core.logs import trace_id_var
from julia.fila.queue import CHANNEL, TIPOS

_INSERT = """
WITH src AS (
    SELECT * FROM unnest(%(medico_id)b::bigint[], %(texto)b::text[],
                         %(agendar_para)b::timestamptz[], %(idempotency_key)b::text[])
        WITH ORDINALITY AS s(medico_id, texto, agendar_para, idempotency_key, ord)
), ins AS (
    INSERT INTO fila_mensagens (medico_id, telefone, campanha_id, tipo, texto, prioridade,
        agendar_para, proxima_tentativa_em, status, outcome, motivo, max_tentativas,
        idempotency_key, created_at, updated_at, trace_id)
    SELECT m.id, m.telefone, %(campanha_id)s, %(tipo)s, s.texto, %(prioridade)s,
           s.agendar_para, s.agendar_para,
           CASE WHEN m.opted_out THEN 'bloqueada' ELSE 'pendente' END,
           CASE WHEN m.opted_out THEN 'BLOCKED_OPTOUT' END,
           CASE WHEN m.opted_out THEN 'the doctor had opted out when it was enqueued' END,
           %(max_tentativas)s, s.idempotency_key, %(now)s, %(now)s, %(trace_id)s
    FROM src s JOIN medicos m ON m.id = s.medico_id
    ORDER BY s.ord
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING status
)
SELECT (SELECT count(*) FROM ins) AS inserted,
       (SELECT count(*) FROM ins WHERE status = 'bloqueada') AS blocked,
       (SELECT count(*) FROM src s WHERE NOT EXISTS
            (SELECT 1 FROM medicos m WHERE m.id = s.medico_id)) AS gone
"""


@dataclass(frozen=True)
class BulkResult:
    total: int
    inserted: int
    duplicates: int  # the idempotency key already named a message
    blocked: int  # inserted already ``bloqueada`` (the doctor had opted out)
    gone: int  # the doctor no longer exists (erased since the segment was read)


def _check(
    tipo: str,
    medico_ids: Sequence[int],
    textos: Sequence[str],
    due: Sequence[datetime],
    keys: Sequence[str],
) -> None:
    if tipo not in TIPOS:
        raise InvalidInput(f"tipo {tipo!r} is not one of {', '.join(TIPOS)}")
    if not len(medico_ids) == len(textos) == len(due) == len(keys):
        raise InvalidInput("medico_ids, textos, due times and keys differ in length")
    if not all(textos):
        raise InvalidInput("texto is required")
    if not all(keys):
        raise InvalidInput("every message of a bulk enqueue needs an idempotency key")
    if any(d.tzinfo is None for d in due):
        raise InvalidInput("a due time without a time zone")


async def enqueue_columns(
    app: App,
    conn: AsyncConnection[Any],
    *,
    tipo: str,
    medico_ids: Sequence[int],
    textos: Sequence[str],
    due: Sequence[datetime],
    keys: Sequence[str],
    campanha_id: int | None = None,
) -> BulkResult:
    """Queue one message per doctor in one statement (all-or-nothing), texts stripped as
    :func:`~julia.fila.queue.enqueue` strips them; commits with the caller's transaction."""
    textos = [t.strip() for t in textos]
    _check(tipo, medico_ids, textos, due, keys)
    if not medico_ids:
        return BulkResult(0, 0, 0, 0, 0)
    cur = await conn.execute(
        _INSERT,
        {
            "medico_id": list(medico_ids), "texto": textos, "agendar_para": list(due),
            "idempotency_key": list(keys), "campanha_id": campanha_id, "tipo": tipo,
            "prioridade": app.settings.fila_default_prioridade,
            "max_tentativas": app.settings.fila_max_tentativas,
            "now": app.clock.now(), "trace_id": trace_id_var.get(),
        },
    )  # fmt: skip
    row = await cur.fetchone()
    assert row is not None
    inserted, blocked, gone = int(row["inserted"]), int(row["blocked"]), int(row["gone"])
    if inserted > blocked:
        await conn.execute("SELECT pg_notify(%s, '')", (CHANNEL,))
    total = len(medico_ids)
    return BulkResult(total, inserted, total - inserted - gone, blocked, gone)
