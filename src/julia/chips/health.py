"""Keeping the pool healthy: gateway sync, health monitor, pool check.

Library functions the scheduler calls (Operations issue): :func:`sync` every
``JULIA_CHIP_SYNC_INTERVAL_S`` (2 min), :func:`monitor` and :func:`pool_check`
every ``JULIA_CHIP_POOL_CHECK_INTERVAL_S`` (5 min). Each is safe to run from
several processes at once (row locks and guarded transitions), and each alert
is raised at most once per ``JULIA_ALERT_COOLDOWN_MIN`` (30 min, through julia.alerts).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from julia.chips import alerts, credentials, lifecycle, pool, scoring, selection, trust
from julia.core import audit
from julia.core.app import App
from julia.core.errors import GatewayError, GatewayNotFound, JuliaError
from julia.core.logs import get_logger

log = get_logger(__name__)

#: Statuses whose connection the sync follows (a provisioned chip has no session yet).
SYNCED = ("pending", "warming", "ready", "active", "degraded")
CONNECTED_STATES = selection.CONNECTED_STATES


# --- gateway sync ---------------------------------------------------------------


@dataclass
class SyncReport:
    checked: int = 0
    connected: int = 0
    disconnected: list[int] = field(default_factory=list)
    #: Chips whose gateway did not answer (left as they were: not judged disconnected).
    unreachable: list[int] = field(default_factory=list)
    changed: list[dict[str, Any]] = field(default_factory=list)
    alerted: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def _gateway_state(app: App, chip: pool.Chip) -> str | None:
    """The instance's state; ``not_found`` when the gateway does not know it; None when
    the gateway itself could not answer (down: that says nothing about the chip)."""

    try:
        gateway = await credentials.gateway_for(app, chip.id, chip.provider, chip.instance)
        return await gateway.connection_state(chip.instance)
    except GatewayNotFound:
        return "not_found"
    except GatewayError as exc:
        log.warning("chip.sync_failed", chip_id=chip.id, instance=chip.instance, error=str(exc))
        return None


async def record_connection(app: App, chip: pool.Chip, state: str, at: datetime) -> bool:
    """Store one connection observation; True when ``connected`` changed."""
    connected = state in CONNECTED_STATES
    async with app.pool.connection() as conn:
        await conn.execute(
            "UPDATE chips SET connected = %(c)s, connection_state = %(s)s, last_sync_at = %(at)s,"
            " desconectado_desde = CASE WHEN %(c)s THEN NULL"
            "   ELSE coalesce(desconectado_desde, %(at)s) END,"
            " updated_at = %(at)s WHERE id = %(id)s",
            {"c": connected, "s": state[:100], "at": at, "id": chip.id},
        )
    if chip.connected is not connected:
        # Connecting is good news (info); losing the connection is the warning.
        (log.info if connected else log.warning)(
            "chip.connection_changed", chip_id=chip.id, instance=chip.instance, state=state,
            connected=connected,
        )  # fmt: skip
        return True
    return False


async def apply_connection_events(app: App) -> int:
    """Apply the ``connection.update`` webhooks the inbox stored since each chip's last
    observation (``gateway_conexoes``); returns how many chips changed. The selection
    already reads them directly, so a disconnection is honoured at once."""
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT c.id, g.state, g.at FROM chips c JOIN gateway_conexoes g"
            " ON g.provider = c.provider AND g.instance = c.instance"
            " WHERE c.last_sync_at IS NULL OR g.at > c.last_sync_at"
        )
        rows = list(await cur.fetchall())
    changed = 0
    for r in rows:
        chip = await pool.get(app, r["id"])
        changed += await record_connection(app, chip, r["state"], r["at"])
    return changed


async def on_connection_event(app: App, instance: str, state: str) -> bool:
    """A ``connection.update`` webhook for ``instance`` (called by the inbox): applied at
    once. Unknown instances are ignored (False)."""
    chip = await pool.by_instance(app, instance)
    if chip is None:
        return False
    await record_connection(app, chip, state.lower(), app.clock.now())
    return True


async def sync(app: App) -> SyncReport:
    """Ask the gateway for the connection state of every chip in use; alert when more
    than ``JULIA_CHIP_DISCONNECTED_ALERT_RATIO`` of them are disconnected."""
    report = SyncReport()
    await apply_connection_events(app)
    now = app.clock.now()
    for chip in await pool.list_chips(app, with_circuit=False):
        if chip.status not in SYNCED:
            continue
        state = await _gateway_state(app, chip)
        if state is None:
            report.unreachable.append(chip.id)
            continue
        report.checked += 1
        if await record_connection(app, chip, state, now):
            report.changed.append({"chip_id": chip.id, "instance": chip.instance, "state": state})
        if state in CONNECTED_STATES:
            report.connected += 1
        else:
            report.disconnected.append(chip.id)
    if report.checked and len(report.disconnected) / report.checked > (
        app.settings.chip_disconnected_alert_ratio
    ):
        report.alerted = await alerts.raise_alert(
            app, "chip.pool_disconnected", "critical",
            f"{len(report.disconnected)} of {report.checked} chips are disconnected",
            details={"disconnected": report.disconnected, "checked": report.checked},
        )  # fmt: skip
    if report.unreachable:  # the gateway is down: chips keep their last known state
        await alerts.raise_alert(
            app, "chip.gateway_unreachable", "critical",
            f"the gateway did not answer for {len(report.unreachable)} chips",
            details={"chips": report.unreachable},
        )  # fmt: skip
    log.info(
        "chip.synced", checked=report.checked, connected=report.connected,
        disconnected=len(report.disconnected),
    )  # fmt: skip
    return report


# --- health monitor -----------------------------------------------------------------


@dataclass
class MonitorReport:
    demoted: list[dict[str, Any]] = field(default_factory=list)
    promoted: list[int] = field(default_factory=list)
    graduated: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def demotion_reason(
    chip: pool.Chip, inputs: trust.TrustInputs, now: datetime, app: App
) -> str | None:
    """Why an active chip must leave production now, or None."""
    s = app.settings
    active = inputs.sent + inputs.errors_24h + inputs.blocks > 0
    # A low score for lack of data (an idle chip) keeps it from prospecting but is no
    # reason to take it out of production; a low score from bad signals is.
    if chip.trust_score < s.chip_demote_trust_below and active:
        return f"trust {chip.trust_score} below {s.chip_demote_trust_below}"
    if inputs.errors_24h > s.chip_demote_errors_24h:
        return f"{inputs.errors_24h} send errors in 24 h (more than {s.chip_demote_errors_24h})"
    if chip.desconectado_desde is not None and now - chip.desconectado_desde > timedelta(
        minutes=s.chip_demote_disconnected_min
    ):
        minutes = int((now - chip.desconectado_desde).total_seconds() // 60)
        return f"disconnected for {minutes} min (more than {s.chip_demote_disconnected_min:g})"
    if inputs.block_rate > s.chip_block_rate_max:
        return f"block rate {inputs.block_rate:.1%} above {s.chip_block_rate_max:.0%}"
    return None


async def monitor(app: App) -> MonitorReport:
    """Demote unhealthy active chips (conversations migrate), graduate warmed-up chips,
    and promote ready chips to keep ``JULIA_CHIP_POOL_MIN_ACTIVE`` active."""
    report = MonitorReport()
    await apply_connection_events(app)
    now = app.clock.now()
    for chip in await pool.list_chips(app, with_circuit=False):
        if chip.status == "active":
            async with app.pool.connection() as conn:
                inputs = await scoring.gather_inputs(app, chip, conn)
            reason = demotion_reason(chip, inputs, now, app)
            if reason is None:
                continue
            try:
                done = await lifecycle.demote(
                    app, chip.id, motivo=f"health monitor: {reason}", actor=audit.AUTOMATION
                )
            except JuliaError as exc:  # changed meanwhile (another monitor, an operator)
                log.info("chip.demote_skipped", chip_id=chip.id, error=str(exc))
                continue
            report.demoted.append(
                {"chip_id": chip.id, "motivo": reason, "migrated": len(done.migrated)}
            )
            await alerts.raise_alert(
                app, "chip.demoted", "warning",
                f"chip {chip.instance} (id {chip.id}) demoted: {reason}",
                key=f"chip.demoted:{chip.id}", details={"chip_id": chip.id, "motivo": reason},
            )  # fmt: skip
        elif chip.status == "warming" and await lifecycle.graduate(app, chip) is not None:
            report.graduated.append(chip.id)
    report.promoted = await refill(app)
    return report


async def refill(app: App) -> list[int]:
    """Promote the best ready chips (trust, then connected) until the pool has its minimum."""
    promoted = []
    async with app.pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) AS n FROM chips WHERE status = 'active'")
        row = await cur.fetchone()
        active = int(row["n"]) if row else 0
        need = app.settings.chip_pool_min_active - active
        if need <= 0:
            return []
        cur = await conn.execute(
            "SELECT id FROM chips WHERE status = 'ready' AND connected IS NOT FALSE"
            " AND trust_score >= %s ORDER BY trust_score DESC, id LIMIT %s",
            (app.settings.chip_demote_trust_below, need),
        )
        ids = [r["id"] for r in await cur.fetchall()]
    for chip_id in ids:
        try:
            await lifecycle.promote(
                app,
                chip_id,
                motivo="refill: active chips below the minimum",
                actor=audit.AUTOMATION,
            )
        except JuliaError as exc:
            log.info("chip.promote_skipped", chip_id=chip_id, error=str(exc))
            continue
        promoted.append(chip_id)
    return promoted


# --- pool check --------------------------------------------------------------------


@dataclass
class PoolReport:
    active: int
    ready: int
    warming: int
    may_prospect: int
    problems: list[dict[str, Any]] = field(default_factory=list)
    alerts_raised: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def pool_check(app: App) -> PoolReport:
    """Critical when active chips are below the minimum or none may prospect; warning when
    ready or warming chips are below their buffers. Each alert at most once per 30 min."""
    s = app.settings
    now = app.clock.now()
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'active') AS active,"
            " count(*) FILTER (WHERE status = 'ready') AS ready,"
            " count(*) FILTER (WHERE status = 'warming') AS warming,"
            " count(*) FILTER (WHERE status = 'active' AND trust_score >= %(t)s"
            "   AND connected IS NOT FALSE"
            "   AND (cooldown_until IS NULL OR cooldown_until <= %(now)s))"
            "   AS may_prospect, count(*) AS total FROM chips",
            {"t": s.chip_threshold_prospeccao, "now": now},
        )
        row = await cur.fetchone()
    assert row is not None
    report = PoolReport(
        active=int(row["active"]), ready=int(row["ready"]), warming=int(row["warming"]),
        may_prospect=int(row["may_prospect"]),
    )  # fmt: skip
    if row["total"] == 0:  # no pool at all: single-instance mode, nothing to watch
        return report
    if report.active < s.chip_pool_min_active:
        report.problems.append({"kind": "chip.pool_active_low", "severity": "critical",
                                "message": f"{report.active} active chips, minimum "
                                           f"{s.chip_pool_min_active}"})  # fmt: skip
    if report.may_prospect == 0:
        report.problems.append({"kind": "chip.pool_no_prospect", "severity": "critical",
                                "message": "no chip may prospect (trust "
                                           f">= {s.chip_threshold_prospeccao})"})  # fmt: skip
    if report.ready < s.chip_pool_ready_buffer:
        report.problems.append({"kind": "chip.pool_ready_low", "severity": "warning",
                                "message": f"{report.ready} ready chips, buffer "
                                           f"{s.chip_pool_ready_buffer}"})  # fmt: skip
    if report.warming < s.chip_pool_warming_buffer:
        report.problems.append({"kind": "chip.pool_warming_low", "severity": "warning",
                                "message": f"{report.warming} warming chips, buffer "
                                           f"{s.chip_pool_warming_buffer}"})  # fmt: skip
    for p in report.problems:
        if await alerts.raise_alert(
            app, p["kind"], p["severity"], p["message"],
            details={"active": report.active, "ready": report.ready, "warming": report.warming,
                     "may_prospect": report.may_prospect},
        ):  # fmt: skip
            report.alerts_raised += 1
    return report
