"""Outbound rate limits that fail closed: one atomic check-and-take per message.

    decision = await take(app, tipo="prospeccao", telefone="+5511999998888", chip_id=7)
    if not decision.allowed:
        reschedule(at=decision.retry_at)        # decision.limit says which limit, .reason why
    elif send_failed:
        await give_back(app, decision.ticket)   # the slot was not used

Limits (settings): per doctor ``rate_limit_medico_daily`` proactive messages in any
24 h; per chip ``rate_limit_chip_hourly`` per hour and ``rate_limit_chip_daily`` per
24 h, and a random gap of ``rate_limit_interval_min_s``..``max_s`` between two
proactive sends; campaign messages weigh ``rate_limit_campanha_weight``; proactive
messages only in business hours; every message (replies too) under the per-chip
burst limit ``rate_limit_chip_burst`` per ``rate_limit_chip_burst_window_s``.

Backends, in order: Redis (one Lua script, sliding-window logs); if Redis fails,
Postgres (counts ``rate_limit_events`` under advisory locks); if that fails too,
deny with ``reason="storage_unavailable"`` (fail closed).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from julia.core import audit, phones, tipos
from julia.core.app import App
from julia.core.errors import InvalidInput
from julia.core.logs import get_logger
from julia.core.redact import mask_phone
from julia.resilience import metrics
from julia.resilience._shared import REDIS_ERRORS, from_ms, redis_health, script, to_ms
from julia.resilience.hours import BusinessHours

log = get_logger(__name__)

#: The limiter's classes: whether each is under the proactive limits (:mod:`julia.core.tipos`).
TIPOS: dict[str, bool] = tipos.RATE_CLASSES
LIMITS = (
    "business_hours",
    "medico_daily",
    "chip_daily",
    "chip_hourly",
    "chip_interval",
    "chip_burst",
    "storage",
)
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
NEVER = -2


@dataclass(frozen=True)
class Ticket:
    """What ``give_back`` needs to return the slots of one take."""

    take_id: str
    backend: str
    telefone: str
    chip_id: str
    weight: int
    proactive: bool


@dataclass(frozen=True)
class Decision:
    """The answer for one message: allowed (keep ``ticket``), or denied with which limit,
    a reason code and ``retry_at`` (None: it can never fit, e.g. weight above the limit)."""

    allowed: bool
    backend: str  # redis | postgres | none (both failed) | disabled
    limit: str | None = None
    reason: str | None = None
    retry_at: datetime | None = None
    ticket: Ticket | None = None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("ticket")
        return out


@dataclass(frozen=True)
class Limits:
    medico_daily: int
    chip_hourly: int
    chip_daily: int
    burst: int
    burst_ms: int
    gap_min_s: float
    gap_max_s: float
    campanha_weight: int

    @classmethod
    def of(cls, app: App) -> Limits:
        s = app.settings
        return cls(
            s.rate_limit_medico_daily, s.rate_limit_chip_hourly, s.rate_limit_chip_daily,
            s.rate_limit_chip_burst, int(s.rate_limit_chip_burst_window_s * 1000),
            s.rate_limit_interval_min_s, s.rate_limit_interval_max_s, s.rate_limit_campanha_weight,
        )  # fmt: skip


REASONS = {
    "business_hours": "outside_business_hours",
    "chip_interval": "too_soon",
    "storage": "storage_unavailable",
}


def _reason(limit: str, retry_ms: int) -> str:
    return "never_fits" if retry_ms == NEVER else REASONS.get(limit, "window_full")


def _keys(app: App, telefone: str, chip_id: str) -> list[str]:
    k = app.keys.key
    return [
        k("rl", "medico", telefone),
        k("rl", "chip", chip_id),
        k("rl", "chipnext", chip_id),
        k("rl", "burst", chip_id),
        k("rl", "override", telefone),
        k("rl", "state"),
    ]


#: How long the state marker lives; when it expires the logs are refilled (idempotent).
MARKER_MS = 7 * DAY_MS


def free_at(slots: list[int], now: int, window: int, limit: int, weight: int) -> int:
    """When ``weight`` more slots fit: -1 now, ``NEVER``, or the time in ms (as the Lua)."""
    if weight > limit:
        return NEVER
    inside = sorted(t for t in slots if t > now - window)
    need = len(inside) + weight - limit
    return -1 if need <= 0 else inside[need - 1] + window


def _worst(checks: list[tuple[str, int]]) -> tuple[str, int] | None:
    worst: tuple[str, int] | None = None
    for name, at in checks:
        if at == -1:
            continue
        if worst is None or (worst[1] != NEVER and (at == NEVER or at > worst[1])):
            worst = (name, at)
    return worst


async def take(
    app: App,
    *,
    tipo: str,
    telefone: str,
    chip_id: object,
    rng: random.Random | None = None,
    chip_limits: tuple[int, int] | None = None,
) -> Decision:
    """Check every limit for one outbound message and, if all pass, take its slots.

    ``chip_limits`` (hourly, daily) replaces the per-chip proactive limits for this take
    (the chip pool scales them by trust level, warming phase and recovery).

    Never raises for storage trouble: Redis, else Postgres, else a denial with
    ``limit="storage"``. Raises :class:`InvalidInput` for an unknown ``tipo`` or a bad phone."""
    if tipo not in TIPOS:
        raise InvalidInput(f"unknown message type {tipo!r}; one of {', '.join(TIPOS)}")
    telefone = phones.normalize(telefone)
    chip = str(chip_id)
    if not app.settings.rate_limits_enabled:
        return _count(Decision(True, "disabled"))
    now = app.clock.now()
    proactive = TIPOS[tipo]
    if proactive:
        hours = BusinessHours.from_settings(app.settings)
        if not hours.is_open(now):
            return _count(
                Decision(
                    False, "none", "business_hours", "outside_business_hours",
                    hours.next_open(now),
                )
            )  # fmt: skip
    lim = Limits.of(app)
    if chip_limits is not None:
        lim = replace(lim, chip_hourly=chip_limits[0], chip_daily=chip_limits[1])
    weight = tipos.weight(tipo, lim.campanha_weight)
    gap_ms = round((rng or random).uniform(lim.gap_min_s, lim.gap_max_s) * 1000) if proactive else 0
    take_id = str(uuid.uuid4())
    args = (take_id, tipo, telefone, chip, weight, proactive, gap_ms)
    health = redis_health(app, "ratelimit")
    if health.usable(now):
        try:
            if health.down_until is not None:  # back after an outage: refill, then decide
                await _refill_quietly(app)
            decision = await _take_redis(app, now, lim, *args)
        except REDIS_ERRORS as exc:
            health.failed(now, exc)
        else:
            health.recovered()
            if decision is not None:
                return _count(decision)
    try:
        return _count(await _take_postgres(app, now, lim, *args))
    except Exception as exc:  # Postgres failing too: fail closed
        log.error("ratelimit.fail_closed", error=f"{type(exc).__name__}: {exc}", chip_id=chip)
        retry = now + timedelta(seconds=app.settings.rate_limit_fail_closed_retry_s)
        return _count(Decision(False, "none", "storage", "storage_unavailable", retry))


def _count(d: Decision) -> Decision:
    metrics.RATE_LIMIT_DECISIONS.labels(d.limit or "ok", d.backend).inc()
    return d


async def _take_redis(
    app: App, now: datetime, lim: Limits, take_id: str, tipo: str, telefone: str,
    chip: str, weight: int, proactive: bool, gap_ms: int,
) -> Decision | None:  # fmt: skip
    """Redis's decision; None when Redis lost its state and Postgres could not refill it."""
    now_ms = to_ms(now)
    argv = [
        now_ms, take_id, weight, 1 if proactive else 0, lim.medico_daily, DAY_MS,
        lim.chip_hourly, HOUR_MS, lim.chip_daily, lim.burst, lim.burst_ms, gap_ms,
    ]  # fmt: skip
    keys = _keys(app, telefone, chip)
    raw = await script(app, "ratelimit_take")(keys=keys, args=argv)
    if int(raw[0]) == -1:  # Redis lost its state: refill every slot from Postgres, then decide
        try:
            await refill_redis(app, everything=True)
        except REDIS_ERRORS:
            raise
        except Exception as exc:  # Postgres cannot refill: let the Postgres fallback decide
            log.error("ratelimit.refill_failed", error=str(exc))
            return None
        raw = await script(app, "ratelimit_take")(keys=keys, args=argv)
        if int(raw[0]) == -1:
            return None
    if int(raw[0]) == 0 and raw[1] == "medico_daily" and await _override_cached(app, telefone):
        # The Redis flag is a cache of Postgres (the truth): it was lost, so try again.
        raw = await script(app, "ratelimit_take")(keys=keys, args=argv)
    if int(raw[0]) == 0:
        limit, at = str(raw[1]), int(raw[2])
        return Decision(False, "redis", limit, _reason(limit, at), _when(at))
    ticket = Ticket(take_id, "redis", telefone, chip, weight, proactive)
    try:  # the event log the Postgres fallback counts; Redis decided, so best effort
        async with app.pool.connection(timeout=2.0) as conn:
            await _insert_event(conn, now, ticket, tipo, gap_ms)
    except Exception as exc:
        log.warning("ratelimit.event_not_recorded", error=str(exc), chip_id=chip)
    return Decision(True, "redis", ticket=ticket)


def _when(at_ms: int) -> datetime | None:
    return None if at_ms == NEVER else from_ms(at_ms)


async def _insert_event(conn: Any, now: datetime, t: Ticket, tipo: str, gap_ms: int) -> None:
    """One row per take. ``synchronous_commit`` is off for this transaction only: the row
    is visible to every counter at once, and a Postgres crash may lose the last few
    milliseconds of a fallback counter, which is worth not waiting for a disk flush."""
    await conn.execute(
        "WITH async_commit AS (SELECT set_config('synchronous_commit', 'off', true))"
        " INSERT INTO rate_limit_events (take_id, at, tipo, proactive, telefone, chip_id,"
        " weight, gap_ms, backend) SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s FROM async_commit",
        (t.take_id, now, tipo, t.proactive, t.telefone, t.chip_id, t.weight, gap_ms,
         t.backend),
    )  # fmt: skip


async def _take_postgres(
    app: App, now: datetime, lim: Limits, take_id: str, tipo: str, telefone: str,
    chip: str, weight: int, proactive: bool, gap_ms: int,
) -> Decision:  # fmt: skip
    """The same decision counted from ``rate_limit_events``, serialised per chip and
    per doctor by transaction-scoped advisory locks (always chip first: no deadlock)."""
    now_ms = to_ms(now)
    async with app.pool.connection(timeout=2.0) as conn, conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('julia.rl.chip:' || %s, 0)),"
            " pg_advisory_xact_lock(hashtextextended('julia.rl.medico:' || %s, 0))",
            (chip, telefone),
        )
        cur = await conn.execute(
            "SELECT at, weight, proactive, gap_ms FROM rate_limit_events"
            " WHERE chip_id = %s AND at > %s",
            (chip, now - timedelta(days=1)),
        )
        chip_rows = await cur.fetchall()
        burst: list[int] = []
        chip_slots: list[int] = []
        next_ms = 0
        for r in chip_rows:
            at = to_ms(r["at"])
            burst.append(at)
            if r["proactive"]:
                chip_slots += [at] * r["weight"]
                next_ms = max(next_ms, at + r["gap_ms"])
        checks: list[tuple[str, int]] = []
        if proactive:
            cur = await conn.execute(
                "SELECT at, weight, EXISTS (SELECT 1 FROM rate_limit_overrides o"
                "  WHERE o.telefone = %(tel)s AND o.criado_em <= %(now)s AND o.ate > %(now)s)"
                "  AS overridden"
                " FROM (SELECT 1) one LEFT JOIN rate_limit_events e"
                "  ON e.telefone = %(tel)s AND e.proactive AND e.at > %(since)s",
                {"tel": telefone, "now": now, "since": now - timedelta(days=1)},
            )
            rows = await cur.fetchall()
            if not rows[0]["overridden"]:
                medico = [to_ms(r["at"]) for r in rows if r["at"] for _ in range(r["weight"])]
                checks.append(("medico_daily", free_at(medico, now_ms, DAY_MS, lim.medico_daily,
                                                       weight)))  # fmt: skip
            checks.append(
                ("chip_daily", free_at(chip_slots, now_ms, DAY_MS, lim.chip_daily, weight))
            )
            checks.append(
                ("chip_hourly", free_at(chip_slots, now_ms, HOUR_MS, lim.chip_hourly, weight))
            )
            if now_ms < next_ms:
                checks.append(("chip_interval", next_ms))
        checks.append(("chip_burst", free_at(burst, now_ms, lim.burst_ms, lim.burst, 1)))
        worst = _worst(checks)
        if worst is not None:
            limit, at = worst
            return Decision(False, "postgres", limit, _reason(limit, at), _when(at))
        ticket = Ticket(take_id, "postgres", telefone, chip, weight, proactive)
        await _insert_event(conn, now, ticket, tipo, gap_ms)
    return Decision(True, "postgres", ticket=ticket)


async def give_back(app: App, ticket: Ticket | None) -> None:
    """Return the slots of a take whose message was not sent. Best effort, never raises."""
    if ticket is None:
        return
    keys = _keys(app, ticket.telefone, ticket.chip_id)[:4]
    try:
        await script(app, "ratelimit_giveback")(
            keys=keys,
            args=[ticket.take_id, ticket.weight],
        )
    except REDIS_ERRORS as exc:
        log.warning("ratelimit.give_back_redis_failed", error=str(exc))
    try:
        async with app.pool.connection(timeout=2.0) as conn:
            await conn.execute(
                "DELETE FROM rate_limit_events WHERE take_id = %s", (ticket.take_id,)
            )
    except Exception as exc:
        log.warning("ratelimit.give_back_postgres_failed", error=str(exc))


async def _refill_quietly(app: App) -> None:
    try:
        await refill_redis(app)
    except REDIS_ERRORS:
        raise
    except Exception as exc:  # Postgres failing: Redis stays short of what it granted
        log.error("ratelimit.refill_failed", error=str(exc))


async def refill_redis(app: App, *, everything: bool = False) -> int:
    """After an outage, copy into Redis the slots Postgres granted meanwhile, so the
    windows stay whole; with ``everything`` (Redis lost its data: the state marker was
    missing) every slot of the last 24 h, whichever backend granted it, and then set the
    marker again. Idempotent (same member names). Returns the events copied."""
    now = app.clock.now()
    async with app.pool.connection(timeout=2.0) as conn:
        cur = await conn.execute(
            "SELECT take_id::text AS take_id, at, proactive, telefone, chip_id, weight, gap_ms"
            " FROM rate_limit_events WHERE (backend = 'postgres' OR %s) AND at > %s ORDER BY at",
            (everything, now - timedelta(days=1)),
        )
        rows = await cur.fetchall()
    burst_ms = int(app.settings.rate_limit_chip_burst_window_s * 1000)
    async with app.redis.pipeline(transaction=False) as pipe:
        for r in rows:
            medico, chip, chipnext, burst = _keys(app, r["telefone"], r["chip_id"])[:4]
            at = to_ms(r["at"])
            if at > to_ms(now) - burst_ms:
                pipe.zadd(burst, {r["take_id"]: at})
                pipe.pexpire(burst, burst_ms)
            if r["proactive"]:
                members = {f"{r['take_id']}:{i}": at for i in range(1, r["weight"] + 1)}
                pipe.zadd(medico, members)
                pipe.zadd(chip, members)
                pipe.pexpire(medico, DAY_MS)
                pipe.pexpire(chip, DAY_MS)
                if at + r["gap_ms"] > to_ms(now):
                    pipe.zadd(chipnext, {r["take_id"]: at + r["gap_ms"]})
                    pipe.pexpire(chipnext, DAY_MS)
        if everything:
            pipe.set(app.keys.key("rl", "state"), "1", px=MARKER_MS)
        await pipe.execute()
    log.info("ratelimit.redis_refilled", events=len(rows), everything=everything)
    return len(rows)


# --- operator overrides and status -------------------------------------------


@dataclass(frozen=True)
class Override:
    id: int
    telefone: str
    motivo: str
    operador: str
    criado_em: datetime
    ate: datetime

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def _override_active(app: App, telefone: str) -> Override | None:
    now = app.clock.now()
    async with app.pool.connection(timeout=2.0) as conn:
        cur = await conn.execute(
            "SELECT id, telefone, motivo, operador, criado_em, ate FROM rate_limit_overrides"
            " WHERE telefone = %s AND criado_em <= %s AND ate > %s ORDER BY ate DESC LIMIT 1",
            (telefone, now, now),
        )
        row = await cur.fetchone()
    return Override(**row) if row else None


async def _override_cached(app: App, telefone: str) -> bool:
    """On a doctor-limit denial: is an override active in Postgres? If so, put its Redis
    flag back. If Postgres cannot say, the limit stands (the strict answer)."""
    try:
        return await _cache_override(app, telefone)
    except REDIS_ERRORS:
        raise
    except Exception as exc:
        log.warning("ratelimit.override_unknown", error=str(exc))
        return False


async def _cache_override(app: App, telefone: str) -> bool:
    found = await _override_active(app, telefone)
    if found is None:
        return False
    ms = int((found.ate - app.clock.now()).total_seconds() * 1000)
    if ms > 0:
        await app.redis.set(_keys(app, telefone, "")[4], found.id, px=ms)
    return ms > 0


async def override(
    app: App,
    telefone: str,
    motivo: str,
    actor: audit.Actor,
    ate: datetime | None = None,
) -> Override:
    """Lift one doctor's proactive limit until ``ate`` (default: the configured hours;
    a time without zone is in ``JULIA_TIMEZONE``). Recorded with who, why and until
    when, and audited in the same transaction."""
    telefone = phones.normalize(telefone)
    if not motivo.strip():
        raise InvalidInput("--motivo must say why")
    now = app.clock.now()
    ate = ate or now + timedelta(hours=app.settings.rate_limit_override_default_h)
    if ate.tzinfo is None:  # an operator's wall-clock time: the business time zone
        ate = ate.replace(tzinfo=ZoneInfo(app.settings.timezone))
    if ate <= now:
        raise InvalidInput("--ate must be in the future")
    async with app.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "INSERT INTO rate_limit_overrides (telefone, motivo, operador, criado_em, ate)"
            " VALUES (%s, %s, %s, %s, %s)"
            " RETURNING id, telefone, motivo, operador, criado_em, ate",
            (telefone, motivo, actor.name, now, ate),
        )
        row = await cur.fetchone()
        assert row is not None
        # a bypass of the guardrails' daily limit: one row where every bypass is listed
        await conn.execute(
            "INSERT INTO guardrail_bypasses (regra, medico_id, operador, motivo, detalhes, at)"
            " SELECT 'limite_diario', (SELECT id FROM medicos WHERE telefone = %s), %s, %s,"
            " jsonb_build_object('ate', %s::text, 'override_id', %s::bigint), %s",
            (telefone, actor.name, motivo, ate.isoformat(), row["id"], now),
        )
        await audit.record(
            conn, now, actor, "ratelimit.override", alvo=telefone, motivo=motivo,
            detalhes={"ate": ate.isoformat()},
        )  # fmt: skip
    try:
        await _cache_override(app, telefone)
    except REDIS_ERRORS as exc:  # Postgres has it; the next denial re-caches it
        log.warning("ratelimit.override_not_cached", error=str(exc))
    log.info("ratelimit.override", telefone=mask_phone(telefone), ate=ate.isoformat())
    return Override(**row)


@dataclass(frozen=True)
class Usage:
    """One limit's use right now: what is used, the limit, what is left."""

    limit: str
    used: int
    max: int
    left: int
    frees_at: datetime | None


@dataclass(frozen=True)
class RateStatus:
    subject: str  # the phone or "chip:<id>"
    backend: str
    usage: list[Usage]
    next_proactive_at: datetime | None = None
    override: Override | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def status(
    app: App, *, telefone: str | None = None, chip_id: object | None = None
) -> RateStatus:
    """Usage and what is left for one doctor or one chip (``julia ratelimit status``)."""
    if (telefone is None) == (chip_id is None):
        raise InvalidInput("give exactly one of --telefone or --chip")
    now = app.clock.now()
    now_ms = to_ms(now)
    lim = Limits.of(app)
    tel = phones.normalize(telefone) if telefone is not None else ""
    chip = str(chip_id) if chip_id is not None else ""
    medico_k, chip_k, next_k, burst_k = _keys(app, tel, chip)[:4]
    backend = "redis"
    nxt = 0
    health = redis_health(app, "ratelimit")
    try:
        if not health.usable(now):
            raise ConnectionError(health.last_error or "Redis marked down")
        if telefone is not None:
            slots = {"medico": await _scores(app, medico_k)}
        else:
            slots = {"chip": await _scores(app, chip_k), "burst": await _scores(app, burst_k)}
            nxt = max([0, *await _scores(app, next_k)])
    except REDIS_ERRORS:
        backend = "postgres"
        slots, nxt = await _pg_slots(app, tel, chip)

    def usage(name: str, s: list[int], window: int, limit: int) -> Usage:
        inside = sorted(t for t in s if t > now_ms - window)
        return Usage(
            name, len(inside), limit, max(0, limit - len(inside)),
            from_ms(inside[0] + window) if inside else None,
        )  # fmt: skip

    if telefone is not None:
        found = await _override_active(app, tel)
        return RateStatus(
            tel, backend, [usage("medico_daily", slots["medico"], DAY_MS, lim.medico_daily)],
            override=found,
        )  # fmt: skip
    return RateStatus(
        f"chip:{chip}",
        backend,
        [
            usage("chip_hourly", slots["chip"], HOUR_MS, lim.chip_hourly),
            usage("chip_daily", slots["chip"], DAY_MS, lim.chip_daily),
            usage("chip_burst", slots["burst"], lim.burst_ms, lim.burst),
        ],
        next_proactive_at=from_ms(nxt) if nxt > now_ms else None,
    )


async def _scores(app: App, key: str) -> list[int]:
    pairs: list[Any] = await app.redis.zrange(key, 0, -1, withscores=True)
    return [int(score) for _, score in pairs]


async def _pg_slots(app: App, tel: str, chip: str) -> tuple[dict[str, list[int]], int]:
    since = app.clock.now() - timedelta(days=1)
    async with app.pool.connection(timeout=2.0) as conn:
        cur = await conn.execute(
            "SELECT at, weight, proactive, gap_ms, telefone, chip_id FROM rate_limit_events"
            " WHERE at > %s AND (telefone = %s OR chip_id = %s)",
            (since, tel, chip),
        )
        rows = await cur.fetchall()
    out: dict[str, list[int]] = {"medico": [], "chip": [], "burst": []}
    nxt = 0
    for r in rows:
        at = to_ms(r["at"])
        if r["telefone"] == tel and r["proactive"]:
            out["medico"] += [at] * r["weight"]
        if r["chip_id"] == chip:
            out["burst"].append(at)
            if r["proactive"]:
                out["chip"] += [at] * r["weight"]
                nxt = max(nxt, at + r["gap_ms"])
    return out, nxt


async def prune_events(app: App, older_than_h: float = 48.0) -> int:
    """Delete event rows no window needs any more (for the scheduler). Returns the count."""
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "DELETE FROM rate_limit_events WHERE at < %s",
            (app.clock.now() - timedelta(hours=older_than_h),),
        )
        return int(cur.rowcount)


# --- a claimed batch in one call ------------------------------------------------------


@dataclass(frozen=True)
class RankedTake:
    """One message of a batch for :func:`take_ranked`: its candidate chips, each with its
    rank key ``(k1, k2, k3, k4)``; candidates are tried by ``(k1, k2, uses, k3, k4)``."""

    tipo: str
    telefone: str
    candidates: list[tuple[str, tuple[int, int, int, int]]]


#: One try of a message on a chip: the chip (None: the denial holds whichever chip) and
#: the answer. A message's tries end at the first allowed one.
Attempt = tuple[str | None, Decision]


async def take_ranked(
    app: App,
    takes: Sequence[RankedTake],
    chips: dict[str, tuple[int, int, int]],
    rng: random.Random | None = None,
) -> list[list[Attempt] | None]:
    """:func:`take` for a claimed batch in one Redis call: each message, in order, on the
    first of its candidates (ranked with each chip's ``uses``, which grow with each take
    of the batch) whose limits let it through, with the same checks as :func:`take`.
    ``chips``: chip id → (uses, hourly limit, daily limit).

    An item is None where this could not decide (Redis down or its state lost and not
    refilled, a doctor's override to re-cache): the caller takes those one at a time."""
    if not takes:
        return []
    now = app.clock.now()
    lim = Limits.of(app)
    hours = BusinessHours.from_settings(app.settings)
    out: list[list[Attempt] | None] = [None] * len(takes)
    todo: list[int] = []
    for i, t in enumerate(takes):
        if t.tipo not in TIPOS:
            raise InvalidInput(f"unknown message type {t.tipo!r}; one of {', '.join(TIPOS)}")
        if not app.settings.rate_limits_enabled:
            out[i] = [(None, _count(Decision(True, "disabled")))]
        elif TIPOS[t.tipo] and not hours.is_open(now):
            d = Decision(False, "none", "business_hours", "outside_business_hours",
                         hours.next_open(now))  # fmt: skip
            out[i] = [(None, _count(d))] if t.candidates else []
        elif not t.candidates:
            out[i] = []
        else:
            todo.append(i)
    health = redis_health(app, "ratelimit")
    if not todo or not health.usable(now):
        return out
    order = list(chips)
    index = {c: j + 1 for j, c in enumerate(order)}
    per_msg = []
    for i in todo:
        t = takes[i]
        tel = phones.normalize(t.telefone)
        proactive = TIPOS[t.tipo]
        weight = tipos.weight(t.tipo, lim.campanha_weight)
        gap = (
            round((rng or random).uniform(lim.gap_min_s, lim.gap_max_s) * 1000) if proactive else 0
        )
        per_msg.append((i, tel, str(uuid.uuid4()), weight, proactive, gap))
    k = app.keys.key
    keys = [k("rl", "state")]
    for c in order:
        keys += [k("rl", "chip", c), k("rl", "chipnext", c), k("rl", "burst", c)]
    argv: list[Any] = [to_ms(now), DAY_MS, HOUR_MS, lim.burst, lim.burst_ms, lim.medico_daily,
                       len(order), len(per_msg)]  # fmt: skip
    for c in order:
        argv += list(chips[c])
    for i, tel, take_id, weight, proactive, gap in per_msg:
        keys += [k("rl", "medico", tel), k("rl", "override", tel)]
        argv += [take_id, weight, 1 if proactive else 0, gap, len(takes[i].candidates)]
        for chip, key in takes[i].candidates:
            argv += [index[chip], *key]
    try:
        if health.down_until is not None:  # back after an outage: refill, then decide
            await _refill_quietly(app)
        raw = await script(app, "ratelimit_take_ranked")(keys=keys, args=argv)
        if raw and int(raw[0]) == -1:  # Redis lost its state: refill, then decide
            try:
                await refill_redis(app, everything=True)
            except REDIS_ERRORS:
                raise
            except Exception as exc:
                log.error("ratelimit.refill_failed", error=str(exc))
                return out
            raw = await script(app, "ratelimit_take_ranked")(keys=keys, args=argv)
            if raw and int(raw[0]) == -1:
                return out
    except REDIS_ERRORS as exc:
        health.failed(now, exc)
        return out
    health.recovered()
    tickets: list[tuple[Ticket, str, int]] = []
    pos = 0
    for i, tel, take_id, weight, proactive, gap in per_msg:
        n, pos = int(raw[pos]), pos + 1
        attempts: list[Attempt] = []
        for _ in range(n):
            chip = order[int(raw[pos]) - 1]
            if int(raw[pos + 1]) == 1:
                ticket = Ticket(take_id, "redis", tel, chip, weight, proactive)
                attempts.append((chip, _count(Decision(True, "redis", ticket=ticket))))
                tickets.append((ticket, takes[i].tipo, gap))
                pos += 2
            else:
                limit, at = str(raw[pos + 2]), int(raw[pos + 3])
                d = Decision(False, "redis", limit, _reason(limit, at), _when(at))
                attempts.append((chip, _count(d)))
                pos += 4
        last = attempts[-1][1] if attempts else None
        if last is not None and last.limit == "medico_daily" and await _override_cached(app, tel):
            continue  # the Redis flag was lost: this one is taken again on its own
        out[i] = attempts
    if tickets:
        try:  # the event log the Postgres fallback counts; Redis decided, so best effort
            async with app.pool.connection(timeout=2.0) as conn:
                await _insert_events(conn, now, tickets)
        except Exception as exc:
            log.warning("ratelimit.event_not_recorded", error=str(exc), count=len(tickets))
    return out


async def _insert_events(conn: Any, now: datetime, tickets: list[tuple[Ticket, str, int]]) -> None:
    """:func:`_insert_event` for a batch of takes, in one statement."""
    await conn.execute(
        "WITH async_commit AS (SELECT set_config('synchronous_commit', 'off', true))"
        " INSERT INTO rate_limit_events (take_id, at, tipo, proactive, telefone, chip_id,"
        " weight, gap_ms, backend)"
        " SELECT t.take_id::uuid, %s, t.tipo, t.proactive, t.telefone, t.chip_id, t.weight,"
        " t.gap_ms, t.backend FROM async_commit, unnest(%s::text[], %s::text[], %s::boolean[],"
        " %s::text[], %s::text[], %s::int[], %s::int[], %s::text[])"
        " AS t(take_id, tipo, proactive, telefone, chip_id, weight, gap_ms, backend)",
        (now, [t.take_id for t, _, _ in tickets], [tipo for _, tipo, _ in tickets],
         [t.proactive for t, _, _ in tickets], [t.telefone for t, _, _ in tickets],
         [t.chip_id for t, _, _ in tickets], [t.weight for t, _, _ in tickets],
         [g for _, _, g in tickets], [t.backend for t, _, _ in tickets]),
    )  # fmt: skip
