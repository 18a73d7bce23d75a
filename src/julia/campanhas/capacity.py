"""What the chip pool may still carry for a campaign: its pace is capped by it.

Eligible chips are those that may send a campaign message now (active, trust at or
above the campaign threshold, connected, not cooling down). Each may send, per hour,
its level × warming × recovery share of the hourly limit, and no more than one
message per longest random gap between proactive sends; per day, what is left of
its daily share in the last 24 h. A campaign message takes
``rate_limit_campanha_weight`` slots. With no chip registered, the single gateway
instance carries the unscaled limits. Rate limits off: only the campaign's pace.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from julia.chips import pool, selection
from julia.core.app import App

UNLIMITED = 10**9


@dataclass(frozen=True)
class Capacity:
    per_hour: int  # campaign messages per hour the pool can carry
    today: int  # campaign messages the pool may still send in the next 24 h
    per_day: int  # ... on a full day
    chips: int  # eligible chips (0 with the single instance)
    why: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def of_pool(app: App) -> Capacity:
    s = app.settings
    w = s.rate_limit_campanha_weight
    gap_cap = int(3600 / s.rate_limit_interval_max_s) if s.rate_limit_interval_max_s > 0 else None
    if not s.rate_limits_enabled:
        return Capacity(UNLIMITED, UNLIMITED, UNLIMITED, 0, "rate limits are off")
    chips = await pool.list_chips(app, with_circuit=False)
    if not chips:
        hourly = s.rate_limit_chip_hourly // w
        hourly = min(hourly, gap_cap) if gap_cap is not None else hourly
        daily = s.rate_limit_chip_daily // w
        return Capacity(hourly, daily, daily, 0, "no chips: the single gateway instance")
    now = app.clock.now()
    threshold = selection.threshold_for("campanha", app)
    eligible = [
        c for c in chips
        if c.status == "active" and c.trust_score >= threshold and c.connected is not False
        and not c.in_cooldown(now)
    ]  # fmt: skip
    if not eligible:
        return Capacity(0, 0, 0, 0, f"no active chip with trust ≥ {threshold}")
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT chip_id, count(*) AS n FROM chip_eventos WHERE kind = 'sent' AND proactive"
            " AND at > %s AND chip_id = ANY(%s) GROUP BY chip_id",
            (now - timedelta(hours=24), [c.id for c in eligible]),
        )
        used = {r["chip_id"]: int(r["n"]) for r in await cur.fetchall()}
    hourly = today = daily = 0
    for c in eligible:
        lim = c.limits(app)
        h = lim.hourly // w
        hourly += min(h, gap_cap) if gap_cap is not None else h
        daily += lim.daily // w
        today += max(0, lim.daily - used.get(c.id, 0)) // w
    return Capacity(hourly, today, daily, len(eligible), f"{len(eligible)} eligible chip(s)")
