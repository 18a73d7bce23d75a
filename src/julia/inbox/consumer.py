"""The inbox consumer: stored messages → turns, one at a time per conversation.

A conversation is *ready* when its pending messages have been quiet for
``JULIA_INBOX_DEBOUNCE_S`` (4 s) or its oldest pending message waited
``JULIA_INBOX_DEBOUNCE_MAX_S`` (15 s): the burst becomes one turn, durably (the
window is computed from ``received_at`` in Postgres, so a restart loses nothing).

Order and exclusivity come from a per-conversation lease row (``inbox_leases``):
any number of consumers in any number of processes may run; a conversation is
processed by one of them at a time, its messages in id (arrival) order, and a
lease whose worker died expires after ``JULIA_INBOX_LEASE_S``.

A processor that raises does not lose the turn: its messages stay ``pendente``
with ``attempts`` + 1 and ``next_attempt_at`` pushed back exponentially (the whole
conversation waits, so order holds); after ``JULIA_INBOX_MAX_ATTEMPTS`` they are
parked as ``erro`` with the error, for ``julia inbox replay``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from psycopg.types.json import Jsonb

from julia.agent.turn import Superseded
from julia.core import logs, metrics
from julia.core.app import App
from julia.core.logs import get_logger
from julia.inbox.processors import (
    Message,
    PipelineResult,
    Processor,
    TurnContext,
    default_processors,
    run_pipeline,
)
from julia.notify import alerts

log = get_logger(__name__)

_READY = """
SELECT m.conversa_key
FROM mensagens_recebidas m
WHERE m.status = 'pendente' AND m.kind = 'mensagem'
GROUP BY m.conversa_key
HAVING (max(m.received_at) <= %(quiet)s OR min(m.received_at) <= %(oldest)s)
   AND max(COALESCE(m.next_attempt_at, '-infinity')) <= %(now)s
   AND NOT EXISTS (SELECT 1 FROM inbox_leases l
                   WHERE l.conversa_key = m.conversa_key AND l.expires_at > %(now)s)
ORDER BY min(m.id)
LIMIT %(n)s
"""
_LEASE = """
INSERT INTO inbox_leases (conversa_key, worker_id, expires_at)
VALUES (%(k)s, %(w)s, %(exp)s)
ON CONFLICT (conversa_key) DO UPDATE
    SET worker_id = EXCLUDED.worker_id, expires_at = EXCLUDED.expires_at
    WHERE inbox_leases.expires_at <= %(now)s
RETURNING conversa_key
"""
_ROWS = """
SELECT id, provider, instance, provider_message_id, telefone, remote_jid, from_me, is_group,
       tipo, texto, midia, push_name, received_at, attempts, trace_id
FROM mensagens_recebidas
WHERE conversa_key = %s AND status = 'pendente' AND kind = 'mensagem'
ORDER BY COALESCE(provider_ts, received_at), id  -- WhatsApp's order, then arrival
"""


@dataclass(frozen=True)
class Turn:
    """What one step did: the turn recorded, or the error it was retried/parked with."""

    conversa_key: str
    mensagens: tuple[int, ...]
    turno_id: int | None = None
    status: str | None = None
    parado_por: str | None = None
    motivo: str | None = None
    erro: str | None = None
    parked: bool = False


def backoff_s(app: App, attempt: int) -> float:
    """Delay before retry ``attempt`` (1-based): base x 2^(attempt-1), capped."""
    s = app.settings
    return float(min(s.inbox_retry_base_s * 2 ** max(attempt - 1, 0), s.inbox_retry_max_s))


async def claim(app: App, worker_id: str) -> str | None:
    """Lease one ready conversation; None when nothing is ready (or others hold them)."""
    s = app.settings
    now = app.clock.now()
    params = {
        "now": now,
        "quiet": now - timedelta(seconds=s.inbox_debounce_s),
        "oldest": now - timedelta(seconds=s.inbox_debounce_max_s),
        "n": 10,
    }
    async with app.pool.connection() as conn:
        cur = await conn.execute(_READY, params)
        candidates = [r["conversa_key"] for r in await cur.fetchall()]
        for key in candidates:
            cur = await conn.execute(
                _LEASE,
                {"k": key, "w": worker_id, "now": now,
                 "exp": now + timedelta(seconds=s.inbox_lease_s)},
            )  # fmt: skip
            if await cur.fetchone() is not None:
                return str(key)
    return None


async def step(
    app: App, worker_id: str, processors: Sequence[Processor] | None = None
) -> Turn | None:
    """Claim one ready conversation and process its pending messages as one turn."""
    key = await claim(app, worker_id)
    if key is None:
        return None
    async with app.pool.connection() as conn:
        cur = await conn.execute(_ROWS, (key,))
        rows = list(await cur.fetchall())
    if not rows:
        await _release(app, key, worker_id)
        return None
    # The turn goes on under the trace of the webhook that brought its first message
    # (the others are logged with it), so its replies and their sends carry it too.
    traces = list(dict.fromkeys(r["trace_id"] for r in rows if r["trace_id"]))
    with logs.traced(traces[0] if traces else None):
        return await _process(app, key, worker_id, rows, traces, processors)


async def _process(
    app: App,
    key: str,
    worker_id: str,
    rows: list[dict[str, Any]],
    traces: list[str],
    processors: Sequence[Processor] | None,
) -> Turn:
    ids = tuple(r["id"] for r in rows)
    ctx = TurnContext.of(key, (_message(r) for r in rows))
    lag_s = (app.clock.now() - min(r["received_at"] for r in rows)).total_seconds()
    started = time.perf_counter()
    if len(traces) > 1:
        log.info("inbox.turn_traces", mensagens=len(ids), traces=traces)
    renewal = asyncio.create_task(_renew(app, key, worker_id))
    try:
        result = await run_pipeline(app, ctx, processors or default_processors())
    except Superseded:
        # A newer message arrived while Júlia was thinking: her reply was dropped and the
        # messages stay pending, so the next claim makes one turn of the whole burst.
        await _release(app, key, worker_id)
        metrics.observe_turn("refeito", time.perf_counter() - started, lag_s)
        return Turn(key, ids, status="refeito")
    except Exception as exc:
        turn = await _fail(app, key, worker_id, ids, max(r["attempts"] for r in rows), exc)
        metrics.observe_turn("erro", time.perf_counter() - started, lag_s)
        return turn
    finally:
        renewal.cancel()
    turn = await _finish(app, key, worker_id, ids, result)
    metrics.observe_turn(turn.status or "unknown", time.perf_counter() - started, lag_s)
    return turn


async def _renew(app: App, key: str, worker_id: str) -> None:
    """Keep the lease while a long turn runs (the agent may take a while)."""
    every = app.settings.inbox_lease_s / 3
    while True:
        await asyncio.sleep(every)
        try:
            async with app.pool.connection() as conn:
                await conn.execute(
                    "UPDATE inbox_leases SET expires_at = %s"
                    " WHERE conversa_key = %s AND worker_id = %s",
                    (app.clock.now() + timedelta(seconds=app.settings.inbox_lease_s), key,
                     worker_id),
                )  # fmt: skip
        except Exception as exc:  # the finish step notices a lost lease
            log.warning("inbox.lease_renew_failed", error=type(exc).__name__)


def _message(row: dict[str, Any]) -> Message:
    return Message(**{k: v for k, v in row.items() if k not in ("attempts", "trace_id")})


async def _release(app: App, key: str, worker_id: str) -> None:
    async with app.pool.connection() as conn:
        await conn.execute(
            "DELETE FROM inbox_leases WHERE conversa_key = %s AND worker_id = %s",
            (key, worker_id),
        )


# The turn finished in one statement: our lease given up (none left means another consumer
# took the conversation: nothing else is written), the turn recorded, its messages marked
# processed, and, once the doctor and conversation are known, the burst kept as interactions.
_FINISH = """
WITH lease AS (
    DELETE FROM inbox_leases WHERE conversa_key = %(k)s AND worker_id = %(w)s RETURNING 1
), turno AS (
    INSERT INTO inbox_turnos (conversa_key, medico_id, conversa_id, mensagens, texto, status,
        responder_apos, parado_por, motivo, resposta, processors, detalhes, worker_id,
        created_at, trace_id)
    SELECT %(k)s::text, %(m)s::bigint, %(c)s::bigint, %(ids)s::bigint[], %(texto)s::text,
        %(status)s::text, %(apos)s::timestamptz, %(parado)s::text, %(motivo)s::text,
        %(resposta)s::text, %(ran)s::text[], %(detalhes)s::jsonb, %(w)s::text,
        %(now)s::timestamptz, %(trace)s::text
    WHERE EXISTS (SELECT 1 FROM lease)
    RETURNING id
), marked AS (
    UPDATE mensagens_recebidas r SET status = 'processada', status_motivo = %(status_motivo)s,
        turno_id = turno.id, attempts = r.attempts + 1, next_attempt_at = NULL,
        updated_at = %(now)s
    FROM turno WHERE r.id = ANY(%(ids)s) AND r.status = 'pendente'
), kept AS (
    INSERT INTO interacoes (conversa_id, medico_id, direcao, tipo, conteudo,
        provider_message_id, created_at)
    SELECT %(c)s::bigint, %(m)s::bigint, u.d, u.t, u.x, u.p, u.r
    FROM turno, unnest(%(dirs)s::text[], %(tipos)s::text[], %(textos)s::text[],
        %(pids)s::text[], %(ats)s::timestamptz[]) WITH ORDINALITY AS u(d, t, x, p, r, n)
    WHERE %(c)s::bigint IS NOT NULL AND %(m)s::bigint IS NOT NULL
    ORDER BY u.n
)
SELECT id FROM turno
"""


async def _finish(
    app: App, key: str, worker_id: str, ids: tuple[int, ...], result: PipelineResult
) -> Turn:
    ctx = result.ctx
    now = app.clock.now()
    detalhes = {**ctx.detalhes, "flags": sorted(ctx.flags)}
    ms = ctx.mensagens
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            _FINISH,
            {"k": key, "w": worker_id, "m": ctx.medico_id, "c": ctx.conversa_id,
             "ids": list(ids), "texto": ctx.texto, "status": result.status,
             "apos": ctx.responder_apos, "parado": result.parado_por, "motivo": result.motivo,
             "resposta": ctx.resposta, "ran": list(result.ran),
             "detalhes": Jsonb(_jsonable(detalhes)), "now": now,
             "trace": logs.trace_id_var.get(), "status_motivo": result.motivo or result.status,
             "dirs": ["saida" if m.from_me else "entrada" for m in ms],
             "tipos": [m.tipo for m in ms], "textos": [m.texto or "" for m in ms],
             "pids": [m.provider_message_id for m in ms], "ats": [m.received_at for m in ms]},
        )  # fmt: skip
        turno = await cur.fetchone()
    if turno is None:
        # Our lease expired and another consumer took the conversation: it will
        # process these messages; recording ours too would make two turns.
        log.warning("inbox.lease_lost", worker_id=worker_id, mensagens=len(ids))
        raise _LeaseLost()
    log.info(
        "inbox.turn",
        turno_id=turno["id"],
        mensagens=len(ids),
        status=result.status,
        parado_por=result.parado_por,
    )
    return Turn(key, ids, turno["id"], result.status, result.parado_por, result.motivo)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


class _LeaseLost(Exception):
    pass


async def _fail(
    app: App, key: str, worker_id: str, ids: tuple[int, ...], attempts: int, exc: Exception
) -> Turn:
    attempt = attempts + 1
    error = f"{type(exc).__name__}: {exc}"[:1000]
    parked = attempt >= app.settings.inbox_max_attempts
    now = app.clock.now()
    retry_at = now + timedelta(seconds=backoff_s(app, attempt))
    async with app.pool.connection() as conn, conn.transaction():
        if parked:
            await conn.execute(
                "UPDATE mensagens_recebidas SET status = 'erro', status_motivo = 'attempts"
                " exhausted', attempts = %s, last_error = %s, next_attempt_at = NULL,"
                " updated_at = %s WHERE id = ANY(%s) AND status = 'pendente'",
                (attempt, error, now, list(ids)),
            )
        else:
            await conn.execute(
                "UPDATE mensagens_recebidas SET attempts = %s, last_error = %s,"
                " next_attempt_at = %s, updated_at = %s WHERE id = ANY(%s) AND status = 'pendente'",
                (attempt, error, retry_at, now, list(ids)),
            )
        await conn.execute(
            "DELETE FROM inbox_leases WHERE conversa_key = %s AND worker_id = %s",
            (key, worker_id),
        )
    log.warning(
        "inbox.turn_parked" if parked else "inbox.turn_failed",
        attempt=attempt,
        error=type(exc).__name__,
        mensagens=len(ids),
    )
    if parked:  # a doctor's message is unanswered until an operator replays it
        message = (
            f"{len(ids)} inbound message(s) parked after {attempt} failed turns ({error[:200]});"
            f" julia inbox list --status erro, then julia inbox replay ID"
        )
        try:
            await alerts.raise_alert(
                app, "inbox.parked", message, details={"ids": list(ids), "error": error}
            )
        except Exception as alert_exc:  # the alert must never break the consumer
            log.error("inbox.parked_alert_failed", error=type(alert_exc).__name__)
    return Turn(key, ids, erro=error, parked=parked)


@dataclass(frozen=True)
class Rescue:
    """What :func:`rescue` found: leases of dead consumers freed, and the messages
    waiting longer than ``JULIA_ALERT_INBOX_STUCK_MIN`` for their turn."""

    leases_freed: int
    stuck: int
    oldest_min: float | None


async def rescue(app: App) -> Rescue:
    """Free the leases of consumers that died mid-turn (their conversations are taken
    again on the next claim; freeing them keeps ``inbox_leases`` to the live ones), and
    alert ``inbox.stalled`` when messages wait for a turn that does not come: no inbox
    consumer running, or one that cannot reach storage. Messages backing off after a
    failed turn are not stuck (they are retried, then parked with ``inbox.parked``)."""
    now = app.clock.now()
    cut = now - timedelta(minutes=app.settings.alert_inbox_stuck_min)
    async with app.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "DELETE FROM inbox_leases WHERE expires_at <= %s RETURNING worker_id", (now,)
        )
        freed = [r["worker_id"] for r in await cur.fetchall()]
        cur = await conn.execute(
            "SELECT count(*) AS n, min(received_at) AS oldest FROM mensagens_recebidas"
            " WHERE status = 'pendente' AND kind = 'mensagem' AND received_at <= %s"
            " AND COALESCE(next_attempt_at, '-infinity') <= %s",
            (cut, now),
        )
        row = await cur.fetchone()
    if freed:
        log.warning("inbox.leases_freed", count=len(freed), workers=sorted(set(freed)))
    stuck = int(row["n"]) if row else 0
    oldest = (now - row["oldest"]).total_seconds() / 60 if row and row["oldest"] else None
    if stuck:
        await alerts.raise_alert(
            app,
            "inbox.stalled",
            f"{stuck} inbound message(s) waiting over {app.settings.alert_inbox_stuck_min:g} min"
            f" for a turn (oldest {oldest or 0:.0f} min): is an inbox consumer running?"
            " julia worker --consumer inbox",
            details={"stuck": stuck, "oldest_min": round(oldest or 0, 1)},
        )
    return Rescue(len(freed), stuck, round(oldest, 1) if oldest is not None else None)


async def run(
    app: App,
    stop: asyncio.Event,
    worker_id: str,
    *,
    processors: Sequence[Processor] | None = None,
    concurrency: int | None = None,
) -> None:
    """Consume the inbox until ``stop`` is set: ``concurrency`` loops, one turn each."""
    procs = list(processors or default_processors())
    loops = concurrency or app.settings.inbox_concurrency
    log.info("inbox.consumer_started", worker_id=worker_id, loops=loops)
    await asyncio.gather(*(_loop(app, stop, worker_id, procs) for _ in range(loops)))
    log.info("inbox.consumer_stopped", worker_id=worker_id)


async def _loop(app: App, stop: asyncio.Event, worker_id: str, procs: list[Processor]) -> None:
    while not stop.is_set():
        try:
            turn = await step(app, worker_id, procs)
        except _LeaseLost:
            turn = None
        except Exception as exc:  # storage trouble: wait and try again, never die
            log.error("inbox.consumer_error", error=type(exc).__name__, detail=str(exc)[:200])
            turn = None
        if turn is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), app.settings.inbox_poll_s)
