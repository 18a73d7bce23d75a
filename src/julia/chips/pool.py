"""The chip registry: rows, lookups, listing, and the one audited status transition.

Operator and automation actions built on it (promote, demote, ban, cooldown...)
live in :mod:`julia.chips.lifecycle`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.errors import UniqueViolation
from psycopg.types.json import Jsonb
from pydantic import SecretStr

from julia.chips import credentials, states, trust
from julia.chips.circuit import circuit_state
from julia.core import audit, phones
from julia.core.app import App
from julia.core.errors import ChipExists, ChipNotFound, InvalidInput
from julia.core.logs import get_logger
from julia.core.redact import mask_phone

log = get_logger(__name__)

PROVIDERS = ("evolution", "zapi")

_COLUMNS = (
    "id, instance, telefone, provider, status, trust_score, trust_level, trust_source,"
    " trust_factors, trust_updated_at, connected, connection_state, desconectado_desde,"
    " last_sync_at, cooldown_until, cooldown_reason, warming_started_at, restricao_em,"
    " activated_at, banned_at, retired_at, enviadas_total, erros_total, last_sent_at,"
    " last_error_at, last_error_code, created_at, updated_at"
)
SELECT = f"SELECT {_COLUMNS} FROM chips"


@dataclass(frozen=True)
class Chip:
    id: int
    instance: str
    telefone: str
    provider: str
    status: str
    trust_score: int
    trust_level: str
    trust_source: str
    trust_factors: dict[str, Any]
    trust_updated_at: datetime
    connected: bool | None
    connection_state: str | None
    desconectado_desde: datetime | None
    last_sync_at: datetime | None
    cooldown_until: datetime | None
    cooldown_reason: str | None
    warming_started_at: datetime | None
    restricao_em: datetime | None
    activated_at: datetime | None
    banned_at: datetime | None
    retired_at: datetime | None
    enviadas_total: int
    erros_total: int
    last_sent_at: datetime | None
    last_error_at: datetime | None
    last_error_code: str | None
    created_at: datetime
    updated_at: datetime
    #: Filled by listings: the chip breaker's state and the last 24 h counts.
    circuit: str = "closed"
    sent_24h: int = 0
    errors_24h: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def in_cooldown(self, now: datetime) -> bool:
        return self.cooldown_until is not None and self.cooldown_until > now

    def warming_days(self, now: datetime) -> float:
        if self.status != "warming" or self.warming_started_at is None:
            return 0.0
        return (now - self.warming_started_at).total_seconds() / 86400

    def days_since_restriction(self, now: datetime) -> float | None:
        if self.restricao_em is None:
            return None
        return (now - self.restricao_em).total_seconds() / 86400

    def limits(self, app: App) -> trust.ChipLimits:
        now = app.clock.now()
        return trust.limits(
            level=self.trust_level,
            status=self.status,
            warming_days=self.warming_days(now),
            days_since_restriction=self.days_since_restriction(now),
            settings=app.settings,
        )

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("extra")
        return d | self.extra


def _chip(row: dict[str, Any]) -> Chip:
    return Chip(**row)


async def get(app: App, chip_id: int, conn: AsyncConnection[Any] | None = None) -> Chip:
    """The chip with this id, or :class:`ChipNotFound`."""
    if conn is None:
        async with app.pool.connection() as c:
            return await get(app, chip_id, c)
    cur = await conn.execute(SELECT + " WHERE id = %s", (chip_id,))
    row = await cur.fetchone()
    if row is None:
        raise ChipNotFound(f"no chip with id {chip_id}", chip_id=chip_id)
    return _chip(row)


async def by_instance(app: App, instance: str) -> Chip | None:
    async with app.pool.connection() as conn:
        cur = await conn.execute(SELECT + " WHERE instance = %s", (instance,))
        row = await cur.fetchone()
    return _chip(row) if row else None


async def count(app: App) -> int:
    async with app.pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) AS n FROM chips")
        row = await cur.fetchone()
    return int(row["n"]) if row else 0


_COUNTS_24H = """
SELECT chip_id,
       count(*) FILTER (WHERE kind = 'sent') AS sent_24h,
       count(*) FILTER (WHERE kind = 'send_error') AS errors_24h
FROM chip_eventos WHERE at > %s AND chip_id = ANY(%s) GROUP BY chip_id
"""


async def list_chips(
    app: App, *, status: str | None = None, with_circuit: bool = True
) -> list[Chip]:
    """Every chip (or those in ``status``); ``with_circuit`` adds its breaker state and its
    sends and errors of the last 24 h."""
    if status is not None and status not in states.Status._value2member_map_:
        _bad_status(status)
    async with app.pool.connection() as conn:
        cur = await conn.execute(_LIST, {"s": status})
        chips = [effective(r) for r in await cur.fetchall()]
    if not with_circuit:
        return chips
    return await _with_counts(app, chips)


# A connection.update webhook newer than the last sync wins (the inbox stores it).
_LIST = f"""
SELECT {", ".join("c." + col.strip() for col in _COLUMNS.split(","))},
       g.state AS webhook_state, g.at AS webhook_at
FROM chips c LEFT JOIN gateway_conexoes g ON g.provider = c.provider AND g.instance = c.instance
WHERE %(s)s::text IS NULL OR c.status = %(s)s ORDER BY c.id
"""
CONNECTED_STATES = frozenset({"open", "connected"})


def effective(row: dict[str, Any]) -> Chip:
    """The chip with a newer ``connection.update`` webhook applied over its last sync."""
    state, at = row.pop("webhook_state", None), row.pop("webhook_at", None)
    chip = _chip(row)
    if at is not None and (chip.last_sync_at is None or at > chip.last_sync_at):
        chip = replace(chip, connected=state in CONNECTED_STATES, connection_state=state)
    return chip


def _bad_status(status: str) -> None:
    raise InvalidInput(
        f"unknown chip status {status!r} (one of: {', '.join(s.value for s in states.Status)})"
    )


async def add(
    app: App,
    *,
    instance: str,
    telefone: str,
    provider: str = "evolution",
    trust_score: int | None = None,
    status: str | None = None,
    actor: audit.Actor | None = None,
    zapi_token: str | SecretStr | None = None,
    zapi_client_token: str | SecretStr | None = None,
) -> Chip:
    """Register a chip. ``trust_score`` and ``status`` seed test pools and demos: a seeded
    score is ``manual`` until the next recalculation replaces it with the computed one.

    A Z-API chip's ``instance`` is its Z-API instance id, and it carries its own
    ``zapi_token`` (and ``zapi_client_token`` when the account has one), stored apart
    (:mod:`julia.chips.credentials`) and never shown; only the default instance
    (``JULIA_ZAPI_INSTANCE``) may go without, its token being in settings."""
    instance = (instance or "").strip()
    if not instance:
        raise InvalidInput("a chip needs an instance name (--instance)")
    if provider not in PROVIDERS:
        raise InvalidInput(f"unknown provider {provider!r} (one of: {', '.join(PROVIDERS)})")
    phone = phones.normalize(telefone)
    creds = credentials.of(zapi_token, zapi_client_token)
    if creds is not None and provider != "zapi":
        raise InvalidInput("--zapi-token is for Z-API chips (--provider zapi)")
    if provider == "zapi" and creds is None and instance != app.settings.zapi_instance:
        raise InvalidInput(
            "a Z-API chip needs its own instance token (--zapi-token); its instance is the"
            " Z-API instance id"
        )
    status = status or states.Status.PROVISIONED.value
    if status not in states.Status._value2member_map_:
        _bad_status(status)
    if trust_score is not None and not 0 <= trust_score <= 100:
        raise InvalidInput(f"trust must be between 0 and 100, not {trust_score}")
    actor = actor or audit.Actor.of(app)
    now = app.clock.now()
    if trust_score is None:
        computed = trust.compute(trust.TrustInputs(status=status), app.settings)
        score, level, source = computed.score, computed.level, "computed"
        factors = computed.as_dict()["factors"]
    else:
        score, level, source, factors = trust_score, trust.level_of(trust_score), "manual", {}
    try:
        async with app.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "INSERT INTO chips (instance, telefone, provider, status, trust_score, trust_level,"
                " trust_source, trust_factors, trust_updated_at, warming_started_at, activated_at,"
                " banned_at, retired_at, created_at, updated_at)"
                " VALUES (%(instance)s, %(telefone)s, %(provider)s, %(status)s, %(score)s,"
                " %(level)s, %(source)s, %(factors)s, %(now)s,"
                " CASE WHEN %(status)s = 'warming' THEN %(now)s END,"
                " CASE WHEN %(status)s = 'active' THEN %(now)s END,"
                " CASE WHEN %(status)s = 'banned' THEN %(now)s END,"
                " CASE WHEN %(status)s = 'retired' THEN %(now)s END, %(now)s, %(now)s)"
                " RETURNING id",
                {"instance": instance, "telefone": phone, "provider": provider, "status": status,
                 "score": score, "level": level, "source": source, "factors": Jsonb(factors),
                 "now": now},
            )  # fmt: skip
            row = await cur.fetchone()
            assert row is not None
            chip_id = int(row["id"])
            if creds is not None:
                await credentials.store(conn, chip_id, creds)
            await conn.execute(
                "INSERT INTO chip_transitions (chip_id, de, para, motivo, ator, detalhes, at)"
                " VALUES (%s, NULL, %s, %s, %s, %s, %s)",
                (chip_id, status, "registered", actor.name,
                 Jsonb({"trust": score, "trust_source": source}), now),
            )  # fmt: skip
            await audit.record(
                conn, now, actor, "chips.add", alvo=f"chip:{chip_id}",
                detalhes={"instance": instance, "telefone": mask_phone(phone),
                          "provider": provider, "status": status, "trust": score,
                          "credentials": "stored" if creds else None},
            )  # fmt: skip
            chip = await get(app, chip_id, conn)
    except UniqueViolation as exc:
        raise ChipExists(
            f"a chip with instance {instance!r} or number {mask_phone(phone)} already exists"
        ) from exc
    app.extensions.pop("chips.present", None)  # the queue now routes through the pool
    app.extensions.pop("chips.providers", None)
    credentials.forget(app)
    log.info("chip.added", chip_id=chip.id, instance=instance, status=status, trust=score)
    return chip


_TIMESTAMP_OF = {
    "warming": "warming_started_at",
    "active": "activated_at",
    "banned": "banned_at",
    "retired": "retired_at",
}


async def transition(
    conn: AsyncConnection[Any],
    chip: Chip,
    to: str,
    *,
    motivo: str,
    actor: audit.Actor,
    at: datetime,
    detalhes: dict[str, Any] | None = None,
) -> Chip:
    """Move ``chip`` to ``to`` inside the caller's transaction: checked against the table,
    guarded against a concurrent change, one ``chip_transitions`` row and one audit row."""
    states.check(chip.status, to)
    if not motivo.strip():
        raise InvalidInput("a chip status change needs a reason (--motivo)")
    stamp = _TIMESTAMP_OF.get(to)
    stamp_sql = f", {stamp} = %(at)s" if stamp else ""
    cur = await conn.execute(
        f"UPDATE chips SET status = %(to)s, updated_at = %(at)s{stamp_sql}"
        " WHERE id = %(id)s AND status = %(from)s RETURNING id",
        {"to": to, "at": at, "id": chip.id, "from": chip.status},
    )
    if await cur.fetchone() is None:  # changed under us: re-read and check again
        fresh_cur = await conn.execute(
            "SELECT status FROM chips WHERE id = %s FOR UPDATE", (chip.id,)
        )
        fresh = await fresh_cur.fetchone()
        if fresh is None:
            raise ChipNotFound(f"no chip with id {chip.id}")
        return await transition(
            conn, replace(chip, status=fresh["status"]), to, motivo=motivo, actor=actor, at=at,
            detalhes=detalhes,
        )  # fmt: skip
    await conn.execute(
        "INSERT INTO chip_transitions (chip_id, de, para, motivo, ator, detalhes, at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (chip.id, chip.status, to, motivo, actor.name, Jsonb(detalhes or {}), at),
    )
    await audit.record(
        conn, at, actor, f"chips.{to}", alvo=f"chip:{chip.id}", motivo=motivo,
        detalhes={"de": chip.status, "para": to} | (detalhes or {}),
    )  # fmt: skip
    log.info(
        "chip.transition", chip_id=chip.id, instance=chip.instance, de=chip.status, para=to,
        motivo=motivo, ator=actor.name,
    )  # fmt: skip
    return replace(chip, status=to, updated_at=at)


async def transitions(app: App, chip_id: int, limit: int = 50) -> list[dict[str, Any]]:
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, de, para, motivo, ator, detalhes, at FROM chip_transitions"
            " WHERE chip_id = %s ORDER BY id DESC LIMIT %s",
            (chip_id, limit),
        )
        return list(await cur.fetchall())


async def describe(app: App, chip_id: int) -> dict[str, Any]:
    """Everything ``julia chips show`` prints: the chip, its limits now, its breaker, its
    last transitions, cooldowns and selections."""
    chip = (await _with_counts(app, [await get(app, chip_id)]))[0]
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT kind, code, detalhes, at FROM chip_eventos WHERE chip_id = %s"
            " AND kind IN ('cooldown', 'send_error', 'block') ORDER BY id DESC LIMIT 10",
            (chip_id,),
        )
        events = list(await cur.fetchall())
        cur = await conn.execute(
            "SELECT count(*) AS n FROM conversas WHERE chip_id = %s AND status = 'ativa'",
            (chip_id,),
        )
        row = await cur.fetchone()
    return {
        "chip": chip.as_dict(),
        "limits": chip.limits(app).as_dict(),
        "in_cooldown": chip.in_cooldown(app.clock.now()),
        "conversas_ativas": int(row["n"]) if row else 0,
        "transitions": await transitions(app, chip_id, limit=20),
        "events": events,
    }


async def _with_counts(app: App, chips: list[Chip]) -> list[Chip]:
    now = app.clock.now()
    async with app.pool.connection() as conn:
        cur = await conn.execute(_COUNTS_24H, (now - timedelta(hours=24), [c.id for c in chips]))
        counts = {r["chip_id"]: r for r in await cur.fetchall()}
    out = []
    for c in chips:
        n = counts.get(c.id, {})
        out.append(
            replace(
                c,
                circuit=await circuit_state(app, c.id),
                sent_24h=n.get("sent_24h", 0),
                errors_24h=n.get("errors_24h", 0),
            )
        )
    return out


async def prune(app: App, *, older_than_days: float = 30.0) -> dict[str, int]:
    """Delete chip events and selection log rows older than ``older_than_days`` (the
    trust window needs 7 days); transitions, migrations and trust history are kept."""
    if older_than_days < 8:
        raise InvalidInput("keep at least 8 days: the trust score reads 7")
    before = app.clock.now() - timedelta(days=older_than_days)
    out = {}
    async with app.pool.connection() as conn:
        for table in ("chip_eventos", "chip_selection_log"):
            cur = await conn.execute(f"DELETE FROM {table} WHERE at < %s", (before,))
            out[table] = cur.rowcount
    return out
