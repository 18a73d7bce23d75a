"""Selection rules against real Postgres and Redis (and without Redis)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from julia.chips import health, lifecycle, pool, selection, trust
from julia.core.app import App
from julia.core.clock import FrozenClock
from julia.core.errors import NoChipAvailable
from julia.resilience import ratelimit
from julia.settings import Settings

DOCTOR = "+5511977700001"


@pytest.fixture
async def rl_app(settings: Settings, clock: FrozenClock) -> AsyncIterator[App]:
    """Rate limits on, without the random gap between proactive sends."""
    configured = settings.model_copy(
        update={"rate_limit_interval_min_s": 0, "rate_limit_interval_max_s": 0}
    )
    async with App.open(configured, clock=clock) as opened:
        yield opened


SERIAL = itertools.count(1)


async def _chips(app: App, *trusts: int, status: str = "active") -> list[pool.Chip]:
    out = []
    for t in trusts:
        n = next(SERIAL)
        out.append(await pool.add(app, instance=f"chip-{t}-{n}", telefone=f"+551190001{n:04d}",
                                  trust_score=t, status=status))  # fmt: skip
    return out


async def _exec(app: App, sql: str, *args: Any) -> list[dict[str, Any]]:
    async with app.pool.connection() as conn:
        cur = await conn.execute(sql, args)
        return list(await cur.fetchall()) if cur.description else []


async def test_thresholds_by_message_type(rl_app: App) -> None:
    app = rl_app
    c85, c65, c45 = await _chips(app, 85, 65, 45)
    pick = {}
    for tipo in ("prospeccao", "campanha", "followup", "resposta", "humano"):
        sel = await selection.select(app, tipo=tipo, telefone=DOCTOR)
        pick[tipo] = (sel.threshold, sel.emergency, {c["id"] for c in sel.candidates
                                                     if c["why"] == "eligible"})  # fmt: skip
        await ratelimit.give_back(app, sel.decision.ticket)
    assert pick["prospeccao"] == (80, False, {c85.id})
    assert pick["campanha"] == (80, False, {c85.id})
    assert pick["followup"] == (60, False, {c85.id, c65.id})
    assert pick["resposta"] == (40, False, {c85.id, c65.id, c45.id})
    assert pick["humano"] == pick["resposta"]


async def test_ready_chips_only_in_emergency_and_never_below_the_lowered_threshold(
    rl_app: App,
) -> None:
    app = rl_app
    (active,) = await _chips(app, 70)
    (ready,) = await _chips(app, 95, status="ready")
    sel = await selection.select(app, tipo="resposta", telefone=DOCTOR)
    assert sel.chip.id == active.id and not sel.emergency  # ready is a reserve
    sel = await selection.select(app, tipo="prospeccao", telefone="+5511977700002")
    assert sel.emergency and sel.threshold == 60 and sel.chip.id == ready.id  # least used
    await lifecycle.cooldown(app, ready.id, minutos=10, motivo="test")
    await lifecycle.cooldown(app, active.id, minutos=10, motivo="test")
    with pytest.raises(NoChipAvailable) as err:
        await selection.select(app, tipo="prospeccao", telefone="+5511977700003")
    assert err.value.details["retry_at"] == app.clock.now() + timedelta(minutes=10)


async def test_a_conversation_stays_on_its_chip_unless_unusable(rl_app: App) -> None:
    app = rl_app
    c90, c70 = await _chips(app, 90, 70)
    rows = await _exec(app, "INSERT INTO medicos (telefone, nome) VALUES (%s, 'Dr') RETURNING id",
                       DOCTOR)  # fmt: skip
    medico = rows[0]["id"]
    rows = await _exec(app, "INSERT INTO conversas (medico_id, chip_id) VALUES (%s, %s)"
                            " RETURNING id", medico, c70.id)  # fmt: skip
    conversa = rows[0]["id"]
    sel = await selection.select(app, tipo="resposta", telefone=DOCTOR, medico_id=medico,
                                 conversa_id=conversa)  # fmt: skip
    assert sel.chip.id == c70.id and sel.motivo == "the conversation's chip"
    await lifecycle.cooldown(app, c70.id, minutos=5, motivo="429")
    sel = await selection.select(app, tipo="resposta", telefone=DOCTOR, medico_id=medico,
                                 conversa_id=conversa)  # fmt: skip
    assert sel.chip.id == c90.id


async def test_recovery_after_a_restriction_caps_the_chip_limits(
    rl_app: App, clock: FrozenClock
) -> None:
    app = rl_app
    (chip,) = await _chips(app, 90)
    await _exec(app, "UPDATE chips SET restricao_em = %s WHERE id = %s",
                clock.now() - timedelta(hours=12), chip.id)  # fmt: skip
    got = await pool.get(app, chip.id)
    lim = got.limits(app)
    assert (lim.hourly, lim.daily) == (2, 10) and "recovering 10%" in lim.why
    for n in range(2):
        await _exec(app, "INSERT INTO chip_eventos (chip_id, kind, proactive, at)"
                         " VALUES (%s, 'sent', true, %s)", chip.id, clock.now())  # fmt: skip
        if n == 0:
            sel = await selection.select(app, tipo="prospeccao", telefone=DOCTOR)
            await ratelimit.give_back(app, sel.decision.ticket)
    with pytest.raises(NoChipAvailable, match="hourly limit 2/2"):
        await selection.select(app, tipo="prospeccao", telefone=DOCTOR)
    sel = await selection.select(app, tipo="resposta", telefone=DOCTOR)  # replies pass
    assert sel.chip.id == chip.id
    clock.advance(days=6)  # fully recovered
    assert (await pool.get(app, chip.id)).limits(app).fraction == 1.0


async def test_selection_keeps_working_with_redis_down(
    settings: Settings, clock: FrozenClock
) -> None:
    down = settings.model_copy(update={"redis_url": SecretStr("redis://127.0.0.1:1/0")})
    async with App.open(down, clock=clock) as app:
        (chip,) = await _chips(app, 85)
        sel = await selection.select(app, tipo="prospeccao", telefone=DOCTOR)
        assert sel.chip.id == chip.id
        assert sel.decision.allowed and sel.decision.backend == "postgres"  # fallback
        listed = await pool.list_chips(app)
        assert listed[0].circuit == "closed"  # the breaker kept going on local state


async def test_monitor_graduates_warmed_up_chips_and_demotes_on_errors(
    rl_app: App, clock: FrozenClock
) -> None:
    app = rl_app
    (warm,) = await _chips(app, 90, status="warming")
    (weak,) = await _chips(app, 86, status="warming")
    (busy,) = await _chips(app, 85)
    await _exec(app, "UPDATE chips SET trust_score = 80 WHERE id = %s", weak.id)
    clock.advance(days=20)
    assert (await health.monitor(app)).graduated == []  # not 21 days yet
    clock.advance(days=1, seconds=1)
    sql = "INSERT INTO chip_eventos (chip_id, kind, code, at) VALUES (%s, 'send_error', 'X', %s)"
    for _ in range(11):
        await _exec(app, sql, busy.id, clock.now())
    report = await health.monitor(app)
    assert report.graduated == [warm.id]  # trust 80 < 85 stays warming
    assert [d["chip_id"] for d in report.demoted] == [busy.id]
    assert "11 send errors in 24 h" in report.demoted[0]["motivo"]
    assert (await pool.get(app, weak.id)).status == "warming"
    # graduated to ready, then promoted at once: the pool was below its minimum
    moves = await _exec(app, "SELECT para, ator FROM chip_transitions WHERE chip_id = %s"
                             " ORDER BY id", warm.id)  # fmt: skip
    assert [m["para"] for m in moves] == ["warming", "ready", "active"]
    assert report.promoted == [warm.id]


def test_demotion_reasons() -> None:
    class FakeApp:
        settings = Settings(_env_file=None)  # type: ignore[call-arg]

    app: Any = FakeApp()
    now = FrozenClock().now()
    base = dict.fromkeys(pool.Chip.__dataclass_fields__)
    base |= {"trust_score": 85, "desconectado_desde": None, "status": "active"}
    chip = pool.Chip(**base)  # type: ignore[arg-type]
    ok = trust.TrustInputs(status="active", sent=100)
    assert health.demotion_reason(chip, ok, now, app) is None
    low = pool.Chip(**(base | {"trust_score": 39}))  # type: ignore[arg-type]
    assert "trust 39" in (health.demotion_reason(low, ok, now, app) or "")
    idle = trust.TrustInputs(status="active")  # no data: low, but not demoted for it
    assert health.demotion_reason(low, idle, now, app) is None
    blocked = trust.TrustInputs(status="active", sent=97, blocks=3)
    assert "block rate" in (health.demotion_reason(chip, blocked, now, app) or "")
    off = pool.Chip(**(base | {"desconectado_desde": now - timedelta(minutes=31)}))  # type: ignore[arg-type]
    assert "disconnected for 31 min" in (health.demotion_reason(off, ok, now, app) or "")


async def test_prune_keeps_the_trust_window(rl_app: App, clock: FrozenClock) -> None:
    app = rl_app
    (chip,) = await _chips(app, 85)
    await _exec(app, "INSERT INTO chip_eventos (chip_id, kind, at) VALUES (%s, 'sent', %s),"
                     " (%s, 'sent', %s)", chip.id, clock.now() - timedelta(days=40), chip.id,
                clock.now())  # fmt: skip
    assert (await pool.prune(app))["chip_eventos"] == 1
    with pytest.raises(Exception, match="at least 8 days"):
        await pool.prune(app, older_than_days=3)


async def test_the_scaled_limits_are_reserved_atomically(rl_app: App, clock: FrozenClock) -> None:
    """Level × recovery caps hold in the rate limiter itself, not only in the pre-check."""
    app = rl_app
    (chip,) = await _chips(app, 90)
    await _exec(app, "UPDATE chips SET restricao_em = %s WHERE id = %s",
                clock.now() - timedelta(hours=12), chip.id)  # fmt: skip
    results = await asyncio.gather(
        *(selection.select(app, tipo="prospeccao", telefone=f"+55119777000{i:02d}")
          for i in range(6)),
        return_exceptions=True,
    )  # fmt: skip
    chosen = [r for r in results if isinstance(r, selection.Selection)]
    refused = [r for r in results if isinstance(r, NoChipAvailable)]
    assert len(chosen) == 2 and len(refused) == 4  # 10 % of 20 per hour
    st = await ratelimit.status(app, chip_id=chip.id)
    assert {u.limit: u.used for u in st.usage}["chip_hourly"] == 2
