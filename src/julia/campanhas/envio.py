"""Create, preview and send a campaign; pause, resume, cancel.

``enviar`` resolves the segment, asks the guardrails which doctors may get a campaign
message, renders each message (a missing placeholder stops everything before a row is
written), and enqueues in batches of ``campanha_batch_size``, each its own committed
statement with one idempotency key per campaign and doctor: run it twice, or kill it
and run it again, and each doctor still has one message. Due times follow the window
and the pace, capped by what the chip pool may still carry (:mod:`.capacity`).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection

from julia.campanhas import capacity, segment, store, template, window
from julia.campanhas.states import Status
from julia.campanhas.store import Campanha, NovaCampanha
from julia.core import audit
from julia.core.app import App
from julia.core.errors import Conflict, InvalidInput
from julia.core.logs import get_logger
from julia.core.redact import mask_phone
from julia.fila import bulk, queue

log = get_logger(__name__)

TIPO = "campanha"
Progress = Callable[[int, int], None]


def key(cid: int, medico_id: int) -> str:
    return f"campanha:{cid}:medico:{medico_id}"


@dataclass
class Recipients:
    total: int  # doctors in the segment
    removed: dict[str, int]  # by the first guardrail that stops each
    eligible: list[dict[str, Any]]  # with "texto" rendered


async def _recipients(
    app: App,
    conn: AsyncConnection[Any],
    texto: str,
    seg: Any,
    vaga_id: int | None,
) -> Recipients:
    """The segment, screened by the guardrails and rendered; a placeholder some recipient
    lacks is an InvalidInput naming how many and an example id."""
    used = template.placeholders(texto)
    render = template.renderer(texto)
    shift = await store.vaga_values(conn, vaga_id)
    rows = await segment.resolve(app, conn, seg, TIPO)
    if not rows:
        raise InvalidInput("the segment is empty: no doctor matches these filters")
    removed: Counter[str] = Counter()
    eligible = []
    lacking: Counter[str] = Counter()
    example: dict[str, int] = {}
    for r in rows:
        stop = r["regras"]
        if stop:
            removed[stop[0]] += 1
            continue
        values = template.doctor_values(r) | shift
        gaps = template.missing(used, values)
        if gaps:
            for g in gaps:
                lacking[g] += 1
                example.setdefault(g, r["id"])
            continue
        r["texto"] = render(values)  # the rows are this call's own
        eligible.append(r)
    if lacking:
        p, n = lacking.most_common(1)[0]
        raise InvalidInput(
            f"{n} recipient(s) have no value for {{{p}}} (e.g. doctor {example[p]}):"
            " narrow the segment or drop the placeholder"
        )
    return Recipients(len(rows), dict(removed), eligible)


async def criar(app: App, n: NovaCampanha, *, actor: audit.Actor) -> Campanha:
    """Validate everything (template, window, segment, recipients) then write one row."""
    janela, ritmo, _ = store.validate(app, n)
    async with app.pool.connection() as conn, conn.transaction():
        rec = await _recipients(app, conn, n.texto, n.segmento, n.vaga_id)
        if not rec.eligible:
            raise InvalidInput(
                f"every doctor of the segment is removed by the guardrails ({rec.removed})"
            )
        cid = await store.insert(conn, app, n, janela, ritmo, actor)
    return await store.get(app, cid)


async def preview(app: App, cid: int, *, examples: int = 10) -> dict[str, Any]:
    c = await store.get(app, cid)
    async with app.pool.connection() as conn:
        rec = await _recipients(app, conn, c.texto, c.seg, c.vaga_id)
    cap = await capacity.of_pool(app)
    return {
        "id": c.id, "status": c.status, "segment": rec.total, "count": len(rec.eligible),
        "removed": rec.removed, "capacity": cap.as_dict(),
        "pace": min(c.ritmo, cap.per_hour),
        "examples": [{"medico_id": r["id"], "telefone": mask_phone(r["telefone"]),
                      "texto": r["texto"]} for r in rec.eligible[:examples]],
    }  # fmt: skip


async def _last_due(conn: AsyncConnection[Any], cid: int) -> datetime | None:
    cur = await conn.execute(
        "SELECT max(agendar_para) AS at FROM fila_mensagens WHERE campanha_id = %s"
        " AND status IN ('pendente', 'processando', 'enviada') AND agendar_para < 'infinity'",
        (cid,),
    )
    row = await cur.fetchone()
    return row["at"] if row else None


async def _due_today(conn: AsyncConnection[Any], cid: int, since: datetime) -> int:
    cur = await conn.execute(
        "SELECT count(*) AS n FROM fila_mensagens WHERE campanha_id = %s AND status = 'pendente'"
        " AND agendar_para >= %s AND agendar_para < %s",
        (cid, since, since + timedelta(hours=24)),
    )
    row = await cur.fetchone()
    return int(row["n"]) if row else 0


async def schedule(
    app: App,
    conn: AsyncConnection[Any],
    c: Campanha,
    n: int,
    *,
    since: datetime | None = None,
    rng: random.Random | None = None,
) -> tuple[list[datetime], capacity.Capacity]:
    """Due times for ``n`` more messages of ``c``: after its last one, at its pace, inside
    its window, within the pool's capacity."""
    now = app.clock.now()
    cap = await capacity.of_pool(app)
    if cap.per_hour <= 0 or cap.per_day <= 0:
        raise Conflict(f"the chip pool cannot carry campaign messages now ({cap.why})")
    last = await _last_due(conn, c.id) if since is None else None
    start = max(now, last + timedelta(microseconds=1)) if last else (since or now)
    today = max(0, cap.today - await _due_today(conn, c.id, now))
    slots = window.plan(
        n, c.janela(app.settings.timezone), since=start, per_hour=min(c.ritmo, cap.per_hour),
        first_day_quota=today, day_quota=cap.per_day, jitter=app.settings.campanha_jitter,
        rng=rng,
    )  # fmt: skip
    return slots, cap


async def enviar(
    app: App,
    cid: int,
    *,
    actor: audit.Actor,
    dry_run: bool = False,
    progress: Progress | None = None,
    rng: random.Random | None = None,
) -> dict[str, Any]:
    """Enqueue the campaign's messages (``enqueued``, ``already``, ``skipped`` by rule)."""
    c = await store.get(app, cid)
    if c.status in (Status.PAUSADA, Status.CONCLUIDA, Status.CANCELADA):
        raise Conflict(
            f"campaign {cid} is {c.status}"
            + (": resume it first (julia campanha retomar)" if c.status == Status.PAUSADA else "")
        )
    async with app.pool.connection() as conn:
        rec = await _recipients(app, conn, c.texto, c.seg, c.vaga_id)
        cur = await conn.execute(
            "SELECT medico_id FROM fila_mensagens WHERE campanha_id = %s AND medico_id IS NOT NULL",
            (cid,),
        )
        queued = {r["medico_id"] for r in await cur.fetchall()}
        todo = [r for r in rec.eligible if r["id"] not in queued]
        slots, cap = await schedule(app, conn, c, len(todo), rng=rng)
    skipped = dict(rec.removed)
    if len(slots) < len(todo):
        skipped["fora_da_janela"] = len(todo) - len(slots)
    result: dict[str, Any] = {
        "id": cid, "dry_run": dry_run, "segment": rec.total, "enqueued": 0,
        "already": len(rec.eligible) - len(todo), "skipped": skipped,
        "pace": min(c.ritmo, cap.per_hour), "capacity": cap.as_dict(),
        "first_due": slots[0] if slots else None, "last_due": slots[-1] if slots else None,
    }  # fmt: skip
    if dry_run:
        result["enqueued"] = len(slots)
        return result
    if c.status != Status.ENVIANDO:
        async with app.pool.connection() as conn, conn.transaction():
            locked = await store.get(app, cid, conn)
            if locked.status != Status.ENVIANDO:
                await store.transition(app, conn, locked, Status.ENVIANDO, actor, "enviar")
    size = app.settings.campanha_batch_size
    done = 0
    async with app.pool.connection() as conn:
        for i in range(0, len(slots), size):
            end = min(i + size, len(slots))  # past the window: no slot, not queued
            rows = todo[i:end]
            async with conn.transaction():  # each batch its own committed statement
                out = await bulk.enqueue_columns(
                    app, conn, tipo=TIPO, campanha_id=cid,
                    medico_ids=[r["id"] for r in rows], textos=[r["texto"] for r in rows],
                    due=slots[i:end], keys=[key(cid, r["id"]) for r in rows],
                )  # fmt: skip
            done += out.inserted
            result["enqueued"] = done
            result["already"] += out.duplicates
            if out.gone:
                skipped["apagado"] = skipped.get("apagado", 0) + out.gone
            if progress:
                progress(end, len(slots))
    async with app.pool.connection() as conn, conn.transaction():
        detalhes = {
            k: v for k, v in result.items() if k not in ("capacity", "first_due", "last_due")
        }
        await audit.record(
            conn, app.clock.now(), actor, "campanha.enviar", alvo=str(cid), detalhes=detalhes
        )
    log.info("campanha.enviada", id=cid, enqueued=done, already=result["already"])
    return result


# --- pause, resume, cancel -----------------------------------------------------------


async def pausar(app: App, cid: int, *, actor: audit.Actor, motivo: str = "") -> dict[str, Any]:
    """Queued messages wait (not cancelled, not expired); ``retomar`` spreads them again."""
    async with app.pool.connection() as conn, conn.transaction():
        c = await store.get(app, cid, conn)
        await store.transition(app, conn, c, Status.PAUSADA, actor, motivo or "pausar")
        cur = await conn.execute(
            # parked: never due, and never expired (fila_expire reads agendar_para), until
            # retomar spreads them again in their order (by id, as they were queued)
            "UPDATE fila_mensagens SET proxima_tentativa_em = 'infinity',"
            " agendar_para = 'infinity', updated_at = %s"
            " WHERE campanha_id = %s AND status = 'pendente' RETURNING id",
            (app.clock.now(), cid),
        )
        held = len(await cur.fetchall())
    return {"id": cid, "status": Status.PAUSADA.value, "held": held}


async def retomar(
    app: App, cid: int, *, actor: audit.Actor, motivo: str = "", rng: random.Random | None = None
) -> dict[str, Any]:
    async with app.pool.connection() as conn, conn.transaction():
        c = await store.get(app, cid, conn)
        c = await store.transition(app, conn, c, Status.ENVIANDO, actor, motivo or "retomar")
        cur = await conn.execute(
            "SELECT id FROM fila_mensagens WHERE campanha_id = %s AND status = 'pendente'"
            " ORDER BY id",
            (cid,),
        )
        ids = [r["id"] for r in await cur.fetchall()]
        slots, _ = await schedule(app, conn, c, len(ids), since=app.clock.now(), rng=rng)
        now = app.clock.now()
        await conn.execute(
            "UPDATE fila_mensagens f SET agendar_para = s.at, proxima_tentativa_em = s.at,"
            " updated_at = %(now)s FROM unnest(%(ids)s::bigint[], %(at)s::timestamptz[])"
            " AS s(id, at) WHERE f.id = s.id AND f.status = 'pendente'",
            {"ids": ids[: len(slots)], "at": slots, "now": now},
        )
        if len(slots) < len(ids):  # no longer fit in the window: visible as such
            await conn.execute(
                "UPDATE fila_mensagens SET status = 'cancelada', outcome = 'CANCELLED',"
                " motivo = 'campanha: no room left in its window', updated_at = %s"
                " WHERE id = ANY(%s) AND status = 'pendente'",
                (now, ids[len(slots) :]),
            )
        await conn.execute("SELECT pg_notify(%s, '')", (queue.CHANNEL,))
    return {"id": cid, "status": Status.ENVIANDO.value, "rescheduled": len(slots),
            "dropped": len(ids) - len(slots)}  # fmt: skip


async def cancelar(app: App, cid: int, *, actor: audit.Actor, motivo: str = "") -> dict[str, Any]:
    """Cancel the campaign and its queued messages (``cancelada`` / CANCELLED, visible)."""
    why = motivo or f"cancelled by {actor.name}"
    async with app.pool.connection() as conn, conn.transaction():
        c = await store.get(app, cid, conn)
        await store.transition(app, conn, c, Status.CANCELADA, actor, why)
        cur = await conn.execute(
            "UPDATE fila_mensagens SET status = 'cancelada', outcome = 'CANCELLED',"
            " motivo = %s, updated_at = %s WHERE campanha_id = %s AND status = 'pendente'"
            " RETURNING id",
            (f"campanha {cid} cancelada: {why}", app.clock.now(), cid),
        )
        cancelled = len(await cur.fetchall())
    return {"id": cid, "status": Status.CANCELADA.value, "cancelled": cancelled}
