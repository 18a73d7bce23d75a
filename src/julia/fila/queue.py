"""Queue operations on ``fila_mensagens``: enqueue, claim, finish, rescue, expire, stats, DLQ.

Every decision takes its time from ``app.clock`` (passed to SQL as a parameter).
A message is claimed under a lease (``FOR UPDATE SKIP LOCKED``, priority first,
then due time); before the gateway is called its ``send_started_at`` is set in
its own committed step, so a worker that dies mid-send leaves a trace: rescue
turns such a message into ``incerta`` (reconciled against the gateway's history)
instead of sending it again.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from psycopg import AsyncConnection

from julia.core import audit, phones, tipos
from julia.core.app import App
from julia.core.errors import Conflict, InvalidInput, NotFound
from julia.core.logs import get_logger, trace_id_var
from julia.fila.states import Outcome, Status, check
from julia.notify import alerts

log = get_logger(__name__)

CHANNEL = "julia_fila"
#: The message types (defined once in :mod:`julia.core.tipos`; kept here by name).
TIPOS = tipos.TIPOS

COLUMNS = (
    "id, medico_id, telefone, conversa_id, campanha_id, tipo, texto, prioridade, agendar_para,"
    " status, tentativas, max_tentativas, proxima_tentativa_em, lease_owner, lease_ate,"
    " send_started_at, chip_id, instancia, outcome, motivo, ultimo_erro, provider_message_id,"
    " idempotency_key, created_at, updated_at, enviada_em, trace_id"
)


@dataclass(frozen=True)
class Mensagem:
    """One row of ``fila_mensagens``."""

    id: int
    medico_id: int | None
    telefone: str
    conversa_id: int | None
    campanha_id: int | None
    tipo: str
    texto: str
    prioridade: int
    agendar_para: datetime
    status: str
    tentativas: int
    max_tentativas: int
    proxima_tentativa_em: datetime
    lease_owner: str | None
    lease_ate: datetime | None
    send_started_at: datetime | None
    chip_id: int | None
    instancia: str | None
    outcome: str | None
    motivo: str | None
    ultimo_erro: str | None
    provider_message_id: str | None
    idempotency_key: str | None
    created_at: datetime
    updated_at: datetime
    enviada_em: datetime | None
    #: The trace it was queued under (the webhook, CLI command or job): its send logs it.
    trace_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class NewMessage:
    """A message to enqueue. ``telefone`` may be omitted when ``medico_id`` is given."""

    texto: str
    telefone: str | None = None
    tipo: str = "humano"
    medico_id: int | None = None
    conversa_id: int | None = None
    campanha_id: int | None = None
    prioridade: int | None = None
    #: A datetime, or text as :func:`parse_when` reads it; None means now.
    agendar_para: datetime | str | None = None
    idempotency_key: str | None = None
    max_tentativas: int | None = None
    #: None: the current trace (:data:`julia.core.logs.trace_id_var`).
    trace_id: str | None = None


@dataclass(frozen=True)
class Enqueued:
    id: int
    created: bool  # False: the idempotency key already named this message
    status: str


@dataclass(frozen=True)
class EnqueueManyResult:
    total: int
    inserted: int
    duplicates: int
    blocked: int  # inserted already ``bloqueada`` (the doctor had opted out)
    ids: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "ids"}


@dataclass(frozen=True)
class Result:
    """How one claimed message ends this attempt (applied by :func:`finish`)."""

    id: int
    status: Status
    outcome: Outcome
    motivo: str | None = None
    erro: str | None = None
    provider_message_id: str | None = None
    proxima: datetime | None = None
    #: True when the attempt did not count (rate limit, breaker open, released).
    give_back_attempt: bool = False
    #: Back to ``pendente`` never due (due time 'infinity', as a paused campaign's messages
    #: are) until the campaign is resumed.
    park: bool = False


# --- validation ------------------------------------------------------------

_RELATIVE = re.compile(r"^\+(\d+)\s*([smhd])$")


def parse_when(text: str | datetime | None, tz: str, now: datetime) -> datetime:
    """A due time: ISO 8601 (naive means the business time zone) or ``+30s/+10m/+2h/+1d``."""
    if text is None or text == "":
        return now
    if isinstance(text, datetime):
        value = text
    else:
        raw = text.strip()
        rel = _RELATIVE.match(raw)
        if rel:
            unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[rel.group(2)]
            try:
                return now + timedelta(**{unit: int(rel.group(1))})
            except (OverflowError, ValueError):  # +99999999999d: past the last datetime
                raise InvalidInput(f"bad due time {raw!r}: too far in the future") from None
        try:
            value = datetime.fromisoformat(raw)
        except ValueError:
            raise InvalidInput(
                f"bad due time {raw!r}: use ISO 8601 (2026-01-05T14:30, with or without"
                " offset) or +30s, +10m, +2h, +1d"
            ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(tz))
    return value


def _validate(app: App, m: NewMessage, now: datetime) -> dict[str, Any]:
    if m.tipo not in TIPOS:
        raise InvalidInput(f"tipo {m.tipo!r} is not one of {', '.join(TIPOS)}")
    texto = (m.texto or "").strip()
    if not texto:
        raise InvalidInput("texto is required")
    if m.telefone is None and m.medico_id is None:
        raise InvalidInput("a message needs a telefone or a medico_id")
    prioridade = app.settings.fila_default_prioridade if m.prioridade is None else m.prioridade
    if not 0 <= prioridade <= 10:
        raise InvalidInput(f"prioridade {prioridade} is not between 0 and 10")
    max_t = m.max_tentativas or app.settings.fila_max_tentativas
    if max_t < 1:
        raise InvalidInput("max_tentativas must be at least 1")
    return {
        "telefone": phones.normalize(m.telefone) if m.telefone is not None else None,
        "texto": texto,
        "tipo": m.tipo,
        "prioridade": prioridade,
        "agendar_para": parse_when(m.agendar_para, app.settings.timezone, now),
        "idempotency_key": m.idempotency_key or None,
        "medico_id": m.medico_id,
        "conversa_id": m.conversa_id,
        "campanha_id": m.campanha_id,
        "max_tentativas": max_t,
        "trace_id": m.trace_id or trace_id_var.get(),
    }


# --- enqueue ---------------------------------------------------------------

_INSERT = """
WITH src AS (
    SELECT * FROM unnest(
        %(telefone)s::text[], %(texto)s::text[], %(tipo)s::text[], %(prioridade)s::int[],
        %(agendar_para)s::timestamptz[], %(idempotency_key)s::text[], %(medico_id)s::bigint[],
        %(conversa_id)s::bigint[], %(campanha_id)s::bigint[], %(max_tentativas)s::int[],
        %(trace_id)s::text[]
    ) WITH ORDINALITY AS s(telefone, texto, tipo, prioridade, agendar_para, idempotency_key,
                           medico_id, conversa_id, campanha_id, max_tentativas, trace_id, ord)
), resolved AS (
    SELECT s.*, COALESCE(m1.id, m2.id) AS mid, COALESCE(m1.telefone, s.telefone) AS tel,
           COALESCE(m1.opted_out, m2.opted_out, false) AS opted_out
    FROM src s
    LEFT JOIN medicos m1 ON m1.id = s.medico_id
    LEFT JOIN medicos m2 ON s.medico_id IS NULL AND m2.telefone = s.telefone
), ins AS (
INSERT INTO fila_mensagens (medico_id, telefone, conversa_id, campanha_id, tipo, texto,
    prioridade, agendar_para, proxima_tentativa_em, status, outcome, motivo, max_tentativas,
    idempotency_key, created_at, updated_at, trace_id)
SELECT mid, tel, conversa_id, campanha_id, tipo, texto, prioridade, agendar_para, agendar_para,
       CASE WHEN opted_out THEN 'bloqueada' ELSE 'pendente' END,
       CASE WHEN opted_out THEN 'BLOCKED_OPTOUT' END,
       CASE WHEN opted_out THEN 'the doctor had opted out when it was enqueued' END,
       max_tentativas, idempotency_key, %(now)s, %(now)s, trace_id
FROM resolved
-- a doctor named by id who does not exist: nothing is written (_insert says which)
WHERE NOT EXISTS (SELECT 1 FROM resolved WHERE medico_id IS NOT NULL AND mid IS NULL)
ORDER BY ord
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id, status
), notified AS (  -- the workers wake when it commits (one notice, whatever the rows)
    SELECT pg_notify(%(channel)s, '') FROM ins WHERE status = 'pendente' LIMIT 1
)
SELECT ins.id, ins.status FROM ins LEFT JOIN notified ON true ORDER BY ins.id
"""


async def _insert(
    conn: AsyncConnection[Any], rows: list[dict[str, Any]], now: datetime
) -> list[dict[str, Any]]:
    """Insert (and notify the workers) in one round trip; the rows already there by
    idempotency key are left out. A doctor id that does not exist rejects them all."""
    params: dict[str, Any] = {k: [r[k] for r in rows] for k in rows[0]}
    params["now"], params["channel"] = now, CHANNEL
    cur = await conn.execute(_INSERT, params)
    inserted = list(await cur.fetchall())
    medico_ids = sorted({r["medico_id"] for r in rows if r["medico_id"] is not None})
    if len(inserted) < len(rows) and medico_ids:  # duplicates, or a doctor who is not there
        cur = await conn.execute("SELECT id FROM medicos WHERE id = ANY(%s)", (medico_ids,))
        missing = set(medico_ids) - {r["id"] for r in await cur.fetchall()}
        if missing:
            raise NotFound(f"no doctor with id {', '.join(map(str, sorted(missing)))}")
    return inserted


async def enqueue(
    app: App,
    message: NewMessage,
    *,
    conn: AsyncConnection[Any] | None = None,
    actor: audit.Actor | None = None,
) -> Enqueued:
    """Queue one message; the same idempotency key twice gives one message.

    Pass ``conn`` to enqueue inside the caller's transaction (the NOTIFY is sent
    when it commits). ``actor`` (an operator) records an audit row.
    """
    now = app.clock.now()
    row = _validate(app, message, now)
    if conn is None:
        async with app.pool.connection() as own, own.transaction():
            return await _enqueue_in(app, own, row, now, actor)
    return await _enqueue_in(app, conn, row, now, actor)


async def _enqueue_in(
    app: App,
    conn: AsyncConnection[Any],
    row: dict[str, Any],
    now: datetime,
    actor: audit.Actor | None,
) -> Enqueued:
    inserted = await _insert(conn, [row], now)
    if inserted:
        result = Enqueued(inserted[0]["id"], True, inserted[0]["status"])
    else:
        cur = await conn.execute(
            "SELECT id, status FROM fila_mensagens WHERE idempotency_key = %s",
            (row["idempotency_key"],),
        )
        found = await cur.fetchone()
        assert found is not None
        result = Enqueued(found["id"], False, found["status"])
    if actor is not None and result.created:
        await audit.record(
            conn, now, actor, "fila.enqueue", alvo=str(result.id),
            detalhes={"tipo": row["tipo"], "status": result.status},
        )  # fmt: skip
    log.info("fila.enqueued", id=result.id, created=result.created, status=result.status)
    return result


async def enqueue_many(
    app: App,
    messages: Sequence[NewMessage],
    *,
    conn: AsyncConnection[Any] | None = None,
    actor: audit.Actor | None = None,
    alvo: str | None = None,
) -> EnqueueManyResult:
    """Queue many messages in one round trip (all-or-nothing: one bad row rejects all)."""
    now = app.clock.now()
    rows = [_validate(app, m, now) for m in messages]
    if not rows:
        return EnqueueManyResult(0, 0, 0, 0)

    async def run(c: AsyncConnection[Any]) -> EnqueueManyResult:
        inserted = await _insert(c, rows, now)
        result = EnqueueManyResult(
            total=len(rows),
            inserted=len(inserted),
            duplicates=len(rows) - len(inserted),
            blocked=sum(1 for r in inserted if r["status"] == Status.BLOQUEADA),
            ids=[r["id"] for r in inserted],
        )
        if actor is not None:
            await audit.record(
                c, now, actor, "fila.enqueue_many", alvo=alvo, detalhes=result.as_dict()
            )
        return result

    if conn is not None:
        result = await run(conn)
    else:
        async with app.pool.connection() as own, own.transaction():
            result = await run(own)
    log.info("fila.enqueued_many", **result.as_dict())
    return result


# --- claim and the send-started step ----------------------------------------

_CLAIM = f"""
WITH due AS (
    SELECT id FROM fila_mensagens
    WHERE status = 'pendente' AND proxima_tentativa_em <= %(now)s
    ORDER BY prioridade DESC, proxima_tentativa_em
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE fila_mensagens f
SET status = 'processando', lease_owner = %(worker)s, lease_desde = %(now)s,
    lease_ate = %(until)s, tentativas = f.tentativas + 1, updated_at = %(now)s
FROM due WHERE f.id = due.id
RETURNING {", ".join("f." + c.strip() for c in COLUMNS.split(","))}
"""


async def claim(app: App, worker_id: str, limit: int) -> list[Mensagem]:
    """Take up to ``limit`` due messages under a lease, highest priority and oldest first."""
    now = app.clock.now()
    until = now + timedelta(seconds=app.settings.fila_lease_s)
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            _CLAIM, {"now": now, "until": until, "worker": worker_id, "limit": limit}
        )
        rows = [Mensagem(**r) for r in await cur.fetchall()]
    rows.sort(key=lambda m: (-m.prioridade, m.proxima_tentativa_em, m.id))
    if rows:
        log.debug("fila.claimed", worker=worker_id, count=len(rows))
    return rows


async def mark_send_started(
    app: App, worker_id: str, routes: dict[int, tuple[str, int | None]]
) -> set[int]:
    """Record, in its own commit, that these sends start now (``id → (instance, chip)``).

    Returns the ids still held by this worker: only those may be sent.
    """
    if not routes:
        return set()
    ids = list(routes)
    now = app.clock.now()
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "UPDATE fila_mensagens f SET send_started_at = %(now)s, instancia = r.instancia,"
            " chip_id = r.chip_id, updated_at = %(now)s"
            " FROM unnest(%(ids)s::bigint[], %(inst)s::text[], %(chip)s::bigint[])"
            "   AS r(id, instancia, chip_id)"
            " WHERE f.id = r.id AND f.status = 'processando' AND f.lease_owner = %(worker)s"
            " RETURNING f.id",
            {
                "now": now,
                "ids": ids,
                "inst": [routes[i][0] for i in ids],
                "chip": [routes[i][1] for i in ids],
                "worker": worker_id,
            },
        )
        return {r["id"] for r in await cur.fetchall()}


async def extend_leases(app: App, worker_id: str, ids: list[int] | None = None) -> int:
    """Push back the lease of what this worker holds (a long batch keeps it): of ``ids``
    only when given (the work still running), else of everything it holds."""
    now = app.clock.now()
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "UPDATE fila_mensagens SET lease_ate = %s"
            " WHERE status = 'processando' AND lease_owner = %s"
            " AND (%s::bigint[] IS NULL OR id = ANY(%s)) RETURNING id",
            (now + timedelta(seconds=app.settings.fila_lease_s), worker_id, ids, ids),
        )
        return len(await cur.fetchall())


# --- finishing an attempt ------------------------------------------------------

_FINISH = """
UPDATE fila_mensagens f SET
    status = r.status, outcome = r.outcome, motivo = r.motivo,
    ultimo_erro = COALESCE(r.erro, f.ultimo_erro),
    falhou_em = CASE WHEN r.erro IS NOT NULL THEN %(now)s ELSE f.falhou_em END,
    provider_message_id = COALESCE(r.pid, f.provider_message_id),
    enviada_em = CASE WHEN r.status = 'enviada' THEN %(now)s ELSE f.enviada_em END,
    proxima_tentativa_em = CASE WHEN r.park THEN 'infinity'
                                ELSE COALESCE(r.proxima, f.proxima_tentativa_em) END,
    agendar_para = CASE WHEN r.park THEN 'infinity' ELSE f.agendar_para END,
    tentativas = GREATEST(f.tentativas - r.undo, 0),
    send_started_at = CASE WHEN r.status = 'pendente' THEN NULL ELSE f.send_started_at END,
    lease_owner = NULL, lease_desde = NULL, lease_ate = NULL, updated_at = %(now)s
FROM unnest(%(ids)s::bigint[], %(status)s::text[], %(outcome)s::text[], %(motivo)s::text[],
            %(erro)s::text[], %(pid)s::text[], %(proxima)s::timestamptz[], %(undo)s::int[],
            %(park)s::bool[])
     AS r(id, status, outcome, motivo, erro, pid, proxima, undo, park)
WHERE f.id = r.id AND f.status = 'processando' AND f.lease_owner = %(worker)s
RETURNING f.id, f.status, f.outcome, f.tentativas, f.ultimo_erro
"""

#: Outcomes whose arrival in the DLQ raises an alert record.
ALERTING = frozenset({Outcome.FAILED_MAX_ATTEMPTS, Outcome.FAILED_PERMANENT})


async def finish(app: App, worker_id: str, results: Sequence[Result]) -> set[int]:
    """Apply the results of one batch in one statement; DLQ arrivals raise one alert.

    Only messages this worker still holds change (a lease lost to a rescue is
    left to the reconciliation). Returns the ids that changed.
    """
    if not results:
        return set()
    for r in results:
        check(Status.PROCESSANDO, r.status)
    now = app.clock.now()
    params = {
        "now": now,
        "worker": worker_id,
        "ids": [r.id for r in results],
        "status": [r.status.value for r in results],
        "outcome": [r.outcome.value for r in results],
        "motivo": [r.motivo for r in results],
        "erro": [r.erro for r in results],
        "pid": [r.provider_message_id for r in results],
        "proxima": [r.proxima for r in results],
        "undo": [1 if r.give_back_attempt else 0 for r in results],
        "park": [r.park for r in results],
    }
    async with app.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(_FINISH, params)
        changed = list(await cur.fetchall())
        dead = [r for r in changed if r["status"] == Status.DLQ and r["outcome"] in ALERTING]
        if dead:
            await alerts.raise_alert(  # deduplicated; Slack told once it committed
                app,
                "fila.dlq",
                f"{len(dead)} message(s) moved to the dead-letter queue",
                severity="critical",
                details={
                    "ids": [r["id"] for r in dead],
                    "outcomes": sorted({r["outcome"] for r in dead}),
                    "last_error": dead[-1]["ultimo_erro"],
                    "worker": worker_id,
                },
                conn=conn,
            )
    lost = len(results) - len(changed)
    if lost:
        log.warning("fila.lease_lost", worker=worker_id, count=lost)
    if dead:
        log.error("fila.dlq", count=len(dead), ids=[r["id"] for r in dead][:20])
    return {r["id"] for r in changed}


async def complete(app: App, worker_id: str, id: int, provider_message_id: str) -> bool:
    """Mark one claimed message sent."""
    done = await finish(
        app,
        worker_id,
        [Result(id, Status.ENVIADA, Outcome.SENT, provider_message_id=provider_message_id)],
    )
    return id in done


async def release(app: App, worker_id: str, ids: Sequence[int], motivo: str) -> set[int]:
    """Give claimed messages back unsent (a stopping worker); the attempt does not count."""
    now = app.clock.now()
    return await finish(
        app,
        worker_id,
        [
            Result(i, Status.PENDENTE, Outcome.RELEASED, motivo=motivo, proxima=now,
                   give_back_attempt=True)
            for i in ids
        ],
    )  # fmt: skip


async def release_worker(app: App, worker_id: str) -> dict[str, int]:
    """A stopping worker lets go of what it still holds: unsent → ``pendente`` (the
    attempt does not count), send started → ``incerta`` (reconciled, never resent blindly)."""
    now = app.clock.now()
    async with app.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            """
            UPDATE fila_mensagens SET
                status = CASE WHEN send_started_at IS NULL THEN 'pendente' ELSE 'incerta' END,
                outcome = CASE WHEN send_started_at IS NULL THEN 'RELEASED'
                               ELSE 'OUTCOME_UNKNOWN' END,
                motivo = 'released by stopping worker ' || lease_owner,
                tentativas = CASE WHEN send_started_at IS NULL THEN GREATEST(tentativas - 1, 0)
                                  ELSE tentativas END,
                proxima_tentativa_em = CASE WHEN send_started_at IS NULL THEN %(now)s
                                            ELSE proxima_tentativa_em END,
                lease_owner = NULL, lease_desde = NULL, lease_ate = NULL, updated_at = %(now)s
            WHERE status = 'processando' AND lease_owner = %(worker)s
            RETURNING status
            """,
            {"now": now, "worker": worker_id},
        )
        rows = list(await cur.fetchall())
        if rows:
            await conn.execute("SELECT pg_notify(%s, '')", (CHANNEL,))
    out = {
        "released": sum(1 for r in rows if r["status"] == Status.PENDENTE),
        "uncertain": sum(1 for r in rows if r["status"] == Status.INCERTA),
    }
    if rows:
        log.info("fila.released", worker=worker_id, **out)
    return out


# --- rescue, reconcile, expire ----------------------------------------------------


@dataclass(frozen=True)
class RescueResult:
    requeued: int
    uncertain: int
    dead: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def rescue(app: App) -> RescueResult:
    """Expired leases: unsent → ``pendente`` (DLQ after the last attempt); started → ``incerta``."""
    now = app.clock.now()
    async with app.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            """
            UPDATE fila_mensagens SET
                status = CASE WHEN send_started_at IS NOT NULL THEN 'incerta'
                              WHEN tentativas >= max_tentativas THEN 'dlq'
                              ELSE 'pendente' END,
                outcome = CASE WHEN send_started_at IS NOT NULL THEN 'OUTCOME_UNKNOWN'
                               WHEN tentativas >= max_tentativas THEN 'FAILED_MAX_ATTEMPTS'
                               ELSE 'RESCUED' END,
                motivo = 'lease of ' || lease_owner || ' expired'
                         || CASE WHEN send_started_at IS NOT NULL
                                 THEN ' after the send started' ELSE '' END,
                proxima_tentativa_em = CASE WHEN send_started_at IS NULL THEN %(now)s
                                            ELSE proxima_tentativa_em END,
                lease_owner = NULL, lease_desde = NULL, lease_ate = NULL, updated_at = %(now)s
            WHERE status = 'processando' AND lease_ate < %(now)s
            RETURNING id, status
            """,
            {"now": now},
        )
        rows = list(await cur.fetchall())
        dead = [r["id"] for r in rows if r["status"] == Status.DLQ]
        if dead:
            await alerts.raise_alert(
                app, "fila.dlq",
                f"{len(dead)} message(s) moved to the dead-letter queue after lease expiry",
                severity="critical",
                details={"ids": dead, "outcomes": [Outcome.FAILED_MAX_ATTEMPTS.value]}, conn=conn,
            )  # fmt: skip
    result = RescueResult(
        requeued=sum(1 for r in rows if r["status"] == Status.PENDENTE),
        uncertain=sum(1 for r in rows if r["status"] == Status.INCERTA),
        dead=len(dead),
    )
    if rows:
        log.warning("fila.rescued", **result.as_dict())
    return result


async def expire(app: App) -> int:
    """Pending longer than ``JULIA_FILA_EXPIRE_AFTER_H`` past the due time → ``expirada``."""
    now = app.clock.now()
    cutoff = now - timedelta(hours=app.settings.fila_expire_after_h)
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "UPDATE fila_mensagens SET status = 'expirada', outcome = 'FAILED_EXPIRED',"
            " motivo = 'pending for longer than ' || %(h)s || ' h', updated_at = %(now)s"
            " WHERE status = 'pendente' AND agendar_para < %(cutoff)s RETURNING id",
            {"now": now, "cutoff": cutoff, "h": str(app.settings.fila_expire_after_h)},
        )
        count = len(await cur.fetchall())
    if count:
        log.warning("fila.expired", count=count)
    return count


# --- operator views and actions ------------------------------------------------------


async def get(app: App, id: int) -> Mensagem:
    async with app.pool.connection() as conn:
        cur = await conn.execute(f"SELECT {COLUMNS} FROM fila_mensagens WHERE id = %s", (id,))
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no message with id {id} in the queue")
    return Mensagem(**row)


async def history(app: App, id: int) -> list[dict[str, Any]]:
    """The recorded transitions of one message, oldest first."""
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT de, para, outcome, motivo, worker, at FROM fila_eventos"
            " WHERE mensagem_id = %s ORDER BY id",
            (id,),
        )
        return list(await cur.fetchall())


async def list_messages(app: App, *, status: str | None = None, limit: int = 50) -> list[Mensagem]:
    if status is not None and status not in {s.value for s in Status}:
        raise InvalidInput(f"status {status!r} is not one of {', '.join(s.value for s in Status)}")
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT {COLUMNS} FROM fila_mensagens"
            " WHERE %(status)s::text IS NULL OR status = %(status)s"
            " ORDER BY updated_at DESC, id DESC LIMIT %(limit)s",
            {"status": status, "limit": limit},
        )
        return [Mensagem(**r) for r in await cur.fetchall()]


async def cancel(
    app: App, id: int, *, actor: audit.Actor | None = None, motivo: str | None = None
) -> Mensagem:
    """Cancel a message not yet sent (pending, uncertain, or claimed but not started)."""
    now = app.clock.now()
    actor = actor or audit.Actor.of(app)
    async with app.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "SELECT status, send_started_at FROM fila_mensagens WHERE id = %s FOR UPDATE", (id,)
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"no message with id {id} in the queue")
        check(row["status"], Status.CANCELADA)
        if row["status"] == Status.PROCESSANDO and row["send_started_at"] is not None:
            raise Conflict(f"message {id} is being sent right now; it cannot be cancelled")
        await conn.execute(
            "UPDATE fila_mensagens SET status = 'cancelada', outcome = 'CANCELLED',"
            " motivo = %s, lease_owner = NULL, lease_desde = NULL, lease_ate = NULL,"
            " updated_at = %s WHERE id = %s",
            (motivo or f"cancelled by {actor.name}", now, id),
        )
        await audit.record(conn, now, actor, "fila.cancel", alvo=str(id), motivo=motivo)
    return await get(app, id)


async def resolve_uncertain(
    app: App, id: int, *, sent: bool, actor: audit.Actor | None = None, motivo: str | None = None
) -> Mensagem:
    """An operator settles an ``incerta`` message: it did arrive (→ ``enviada``) or
    it did not (→ ``pendente``, sent again)."""
    now = app.clock.now()
    actor = actor or audit.Actor.of(app)
    target = Status.ENVIADA if sent else Status.PENDENTE
    async with app.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "SELECT status FROM fila_mensagens WHERE id = %s FOR UPDATE", (id,)
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"no message with id {id} in the queue")
        if row["status"] != Status.INCERTA:
            raise Conflict(f"message {id} is {row['status']}, not incerta")
        why = motivo or (
            f"confirmed sent by {actor.name}" if sent else f"resend ordered by {actor.name}"
        )
        await conn.execute(
            "UPDATE fila_mensagens SET status = %(to)s, outcome = %(outcome)s, motivo = %(why)s,"
            " enviada_em = CASE WHEN %(sent)s THEN COALESCE(send_started_at, %(now)s) END,"
            " send_started_at = CASE WHEN %(sent)s THEN send_started_at END,"
            " proxima_tentativa_em = %(now)s, updated_at = %(now)s WHERE id = %(id)s",
            {"to": target.value, "outcome": (Outcome.SENT if sent else Outcome.RETRY).value,
             "why": why, "sent": sent, "now": now, "id": id},
        )  # fmt: skip
        await audit.record(
            conn, now, actor, "fila.resolve", alvo=str(id), motivo=why, detalhes={"sent": sent}
        )
        if not sent:
            await conn.execute("SELECT pg_notify(%s, '')", (CHANNEL,))
    return await get(app, id)


async def block_pending_for_medico(
    app: App, medico_id: int, reason: str, *, conn: AsyncConnection[Any] | None = None
) -> int:
    """Block every pending message to a doctor (opt-out): ``bloqueada`` / BLOCKED_OPTOUT.

    Messages already claimed are caught by the send-time check (:mod:`julia.guardrails`).
    Returns how many.
    """
    sql = (
        "UPDATE fila_mensagens f SET status = 'bloqueada', outcome = 'BLOCKED_OPTOUT',"
        " motivo = %(reason)s, updated_at = %(now)s WHERE f.status = 'pendente'"
        " AND (f.medico_id = %(mid)s OR f.telefone = (SELECT telefone FROM medicos"
        " WHERE id = %(mid)s)) RETURNING id"
    )
    params = {"reason": reason, "now": app.clock.now(), "mid": medico_id}
    if conn is None:
        async with app.pool.connection() as own:
            cur = await own.execute(sql, params)
            count = len(await cur.fetchall())
    else:
        cur = await conn.execute(sql, params)
        count = len(await cur.fetchall())
    if count:
        log.info("fila.blocked_for_medico", medico_id=medico_id, count=count)
    return count


async def stats(app: App) -> dict[str, Any]:
    """Counts by status, oldest pending age, sent and errors in the last hour, mean times."""
    now = app.clock.now()
    hour_ago = now - timedelta(hours=1)
    async with app.pool.connection() as conn:
        cur = await conn.execute("SELECT status, count(*) AS n FROM fila_mensagens GROUP BY 1")
        counts = {s.value: 0 for s in Status} | {r["status"]: r["n"] for r in await cur.fetchall()}
        cur = await conn.execute(
            """
            SELECT
              (SELECT min(proxima_tentativa_em) FROM fila_mensagens
                WHERE status = 'pendente' AND proxima_tentativa_em <= %(now)s) AS oldest_due,
              (SELECT count(*) FROM fila_mensagens WHERE enviada_em >= %(h)s) AS sent_last_hour,
              (SELECT count(*) FROM fila_mensagens WHERE falhou_em >= %(h)s) AS errors_last_hour,
              (SELECT avg(extract(epoch FROM enviada_em - agendar_para)) FROM fila_mensagens
                WHERE enviada_em >= %(h)s) AS mean_due_to_sent_s,
              (SELECT avg(extract(epoch FROM enviada_em - send_started_at)) FROM fila_mensagens
                WHERE enviada_em >= %(h)s) AS mean_send_s
            """,
            {"now": now, "h": hour_ago},
        )
        row = await cur.fetchone()
    assert row is not None
    oldest = row["oldest_due"]
    return {
        "counts": counts,
        **counts,
        "total": sum(counts.values()),
        "oldest_pending_age_s": round((now - oldest).total_seconds(), 3) if oldest else 0.0,
        "sent_last_hour": row["sent_last_hour"],
        "errors_last_hour": row["errors_last_hour"],
        "mean_processing_s": _round(row["mean_due_to_sent_s"]),
        "mean_send_s": _round(row["mean_send_s"]),
    }


def _round(value: Any) -> float | None:
    return round(float(value), 3) if value is not None else None


# --- dead-letter queue -----------------------------------------------------------------


async def dlq_list(app: App, *, limit: int = 50) -> list[Mensagem]:
    return await list_messages(app, status=Status.DLQ.value, limit=limit)


async def dlq_replay(
    app: App,
    ids: Sequence[int] | None = None,
    *,
    all_: bool = False,
    dry_run: bool = False,
    actor: audit.Actor | None = None,
) -> list[int]:
    """Send dead letters again: attempts reset, due now, and who replayed them recorded."""
    if not all_ and not ids:
        raise InvalidInput("name the message ids to replay, or --all")
    now = app.clock.now()
    actor = actor or audit.Actor.of(app)
    async with app.pool.connection() as conn, conn.transaction():
        if ids:
            cur = await conn.execute(
                "SELECT id, status FROM fila_mensagens WHERE id = ANY(%s)", (list(ids),)
            )
            found = {r["id"]: r["status"] for r in await cur.fetchall()}
            missing = [i for i in ids if i not in found]
            if missing:
                raise NotFound(f"no message with id {', '.join(map(str, missing))} in the queue")
            not_dead = [f"{i} ({found[i]})" for i in ids if found[i] != Status.DLQ]
            if not_dead:
                raise Conflict(f"not in the DLQ: {', '.join(not_dead)}")
        where = "status = 'dlq'" + ("" if all_ and not ids else " AND id = ANY(%(ids)s)")
        if dry_run:
            cur = await conn.execute(
                f"SELECT id FROM fila_mensagens WHERE {where} ORDER BY id", {"ids": list(ids or [])}
            )
            return [r["id"] for r in await cur.fetchall()]
        cur = await conn.execute(
            f"UPDATE fila_mensagens SET status = 'pendente', outcome = 'REPLAYED',"
            f" motivo = 'replayed by ' || %(who)s, tentativas = 0, send_started_at = NULL,"
            f" proxima_tentativa_em = %(now)s, updated_at = %(now)s"
            f" WHERE {where} RETURNING id",
            {"ids": list(ids or []), "who": actor.name, "now": now},
        )
        replayed = sorted(r["id"] for r in await cur.fetchall())
        if replayed:
            await audit.record(
                conn, now, actor, "fila.dlq_replay", alvo=",".join(map(str, replayed[:50])),
                detalhes={"ids": replayed, "all": all_},
            )  # fmt: skip
            await conn.execute("SELECT pg_notify(%s, '')", (CHANNEL,))
    log.info("fila.dlq_replayed", count=len(replayed), operador=actor.name)
    return replayed


async def dlq_purge(app: App, *, older_than_days: float, actor: audit.Actor | None = None) -> int:
    """Delete dead letters older than N days (by their last change); audited."""
    if older_than_days < 0:
        raise InvalidInput("--older-than must be zero or more days")
    now = app.clock.now()
    actor = actor or audit.Actor.of(app)
    async with app.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "DELETE FROM fila_mensagens WHERE status = 'dlq' AND updated_at < %s RETURNING id",
            (now - timedelta(days=older_than_days),),
        )
        purged = [r["id"] for r in await cur.fetchall()]
        await audit.record(
            conn, now, actor, "fila.dlq_purge", alvo=f"older than {older_than_days} days",
            detalhes={"count": len(purged), "ids": purged[:1000]},
        )  # fmt: skip
    return len(purged)
