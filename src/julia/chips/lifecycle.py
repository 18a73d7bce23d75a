"""What operators and automation do to a chip: promote, demote, cooldown, ban, retire.

Each is one transaction with its ``chip_transitions`` row and its audit row. A
demoted, banned or retired chip's active conversations then move to other chips
(:mod:`julia.chips.migration`); a ban also recomputes the trust score at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from psycopg.types.json import Jsonb

from julia.chips import migration, pool, scoring, states
from julia.core import audit
from julia.core.app import App
from julia.core.errors import ChipTransitionRefused, InvalidInput
from julia.core.logs import get_logger

log = get_logger(__name__)


@dataclass
class ActionResult:
    """A chip after an action, and what followed from it (migrations, recalculation)."""

    chip: pool.Chip
    action: str
    migrated: list[dict[str, Any]] = field(default_factory=list)
    trust: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "chip": self.chip.as_dict(),
            "migrated": self.migrated,
            "trust": self.trust,
        }


async def _move(
    app: App, chip_id: int, to: str, motivo: str, actor: audit.Actor, **detalhes: Any
) -> pool.Chip:
    now = app.clock.now()
    async with app.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(pool.SELECT + " WHERE id = %s FOR UPDATE", (chip_id,))
        row = await cur.fetchone()
        chip = pool.Chip(**row) if row else await pool.get(app, chip_id, conn)
        return await pool.transition(
            conn, chip, to, motivo=motivo, actor=actor, at=now, detalhes=detalhes or None
        )


async def promote(
    app: App,
    chip_id: int,
    *,
    motivo: str = "promoted by operator",
    actor: audit.Actor | None = None,
) -> ActionResult:
    """One step up: provisioned → pending → warming → ready → active; degraded → active."""
    chip = await pool.get(app, chip_id)
    target = states.PROMOTE.get(states.Status(chip.status))
    if target is None:
        raise ChipTransitionRefused(f"chip {chip_id} is {chip.status}: nothing to promote it to")
    moved = await _move(app, chip_id, target.value, motivo, actor or audit.Actor.of(app))
    return ActionResult(moved, "promote")


async def demote(
    app: App, chip_id: int, *, motivo: str, actor: audit.Actor | None = None, migrate: bool = True
) -> ActionResult:
    """warming/ready/active → degraded, then its active conversations move to other chips."""
    if not motivo.strip():
        raise InvalidInput("demoting a chip needs a reason (--motivo)")
    chip = await pool.get(app, chip_id)
    if states.Status(chip.status) not in states.DEMOTABLE:
        raise ChipTransitionRefused(f"chip {chip_id} is {chip.status}: it cannot be demoted")
    actor = actor or audit.Actor.of(app)
    moved = await _move(app, chip_id, states.Status.DEGRADED.value, motivo, actor)
    result = ActionResult(moved, "demote")
    if migrate:
        result.migrated = await _migrate(app, moved, motivo, actor)
    return result


async def ban(
    app: App, chip_id: int, *, motivo: str, actor: audit.Actor | None = None
) -> ActionResult:
    """The number was banned by WhatsApp (final): conversations move, trust recomputed now."""
    if not motivo.strip():
        raise InvalidInput("banning a chip needs a reason (--motivo)")
    actor = actor or audit.Actor.of(app)
    moved = await _move(app, chip_id, states.Status.BANNED.value, motivo, actor)
    result = ActionResult(moved, "ban")
    result.migrated = await _migrate(app, moved, motivo, actor)

    result.trust = (await scoring.recalculate(app, chip_id, motivo="ban")).as_dict()
    result.chip = await pool.get(app, chip_id)
    return result


async def retire(
    app: App, chip_id: int, *, motivo: str, actor: audit.Actor | None = None
) -> ActionResult:
    """Take a chip out of the pool for good (final); its conversations move."""
    if not motivo.strip():
        raise InvalidInput("retiring a chip needs a reason (--motivo)")
    actor = actor or audit.Actor.of(app)
    moved = await _move(app, chip_id, states.Status.RETIRED.value, motivo, actor)
    result = ActionResult(moved, "retire")
    result.migrated = await _migrate(app, moved, motivo, actor)
    return result


async def cooldown(
    app: App,
    chip_id: int,
    *,
    minutos: float,
    motivo: str,
    actor: audit.Actor | None = None,
    code: str | None = None,
) -> pool.Chip:
    """Keep the chip out of selection for ``minutos`` (a window, not a status). A longer
    cooldown already running is kept; 0 minutes ends the cooldown."""
    if minutos < 0:
        raise InvalidInput("--minutos cannot be negative")
    if not motivo.strip():
        raise InvalidInput("a cooldown needs a reason (--motivo)")
    actor = actor or audit.Actor.of(app)
    now = app.clock.now()
    until = now + timedelta(minutes=minutos)
    async with app.pool.connection() as conn, conn.transaction():
        chip = await pool.get(app, chip_id, conn)
        if minutos == 0:
            sql = "UPDATE chips SET cooldown_until = NULL, cooldown_reason = %(m)s,"
            sql += " updated_at = %(now)s WHERE id = %(id)s"
        else:
            sql = (
                "UPDATE chips SET cooldown_until = greatest(coalesce(cooldown_until, %(until)s),"
                " %(until)s), cooldown_reason = CASE WHEN cooldown_until > %(until)s"
                " THEN cooldown_reason ELSE %(m)s END, updated_at = %(now)s WHERE id = %(id)s"
            )
        await conn.execute(sql, {"until": until, "m": motivo, "now": now, "id": chip.id})
        await conn.execute(
            "INSERT INTO chip_eventos (chip_id, kind, code, detalhes, at)"
            " VALUES (%s, 'cooldown', %s, %s, %s)",
            (chip.id, code, Jsonb({"minutos": minutos, "motivo": motivo, "ator": actor.name,
                                   "until": until.isoformat()}), now),
        )  # fmt: skip
        await audit.record(
            conn, now, actor, "chips.cooldown", alvo=f"chip:{chip.id}", motivo=motivo,
            detalhes={"minutos": minutos, "until": until.isoformat(), "code": code},
        )  # fmt: skip
        chip = await pool.get(app, chip.id, conn)
    log.warning(
        "chip.cooldown", chip_id=chip.id, instance=chip.instance, until=chip.cooldown_until,
        motivo=motivo, code=code,
    )  # fmt: skip
    return chip


async def graduate(app: App, chip: pool.Chip) -> pool.Chip | None:
    """warming → ready when warming is over and trust ≥ ``JULIA_CHIP_GRADUATION_TRUST``."""
    now = app.clock.now()
    if chip.status != "warming" or chip.warming_days(now) < app.settings.chip_warming_days:
        return None
    if chip.trust_score < app.settings.chip_graduation_trust:
        return None
    return await _move(
        app, chip.id, "ready", "warming complete", audit.AUTOMATION,
        trust=chip.trust_score, warming_days=round(chip.warming_days(now), 1),
    )  # fmt: skip


async def _migrate(
    app: App, chip: pool.Chip, motivo: str, actor: audit.Actor
) -> list[dict[str, Any]]:

    moves = await migration.migrate_conversations(app, chip.id, motivo=motivo, actor=actor)
    return [m.as_dict() for m in moves]
