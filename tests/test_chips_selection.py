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
from julia.core import audit
from julia.core.app import App
from julia.core.clock import FrozenClock
from julia.core.errors import NoChipAvailable
from julia.resilience import ratelimit
from julia.resilience.breaker import breakers
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


async def test_a_batch_gets_the_choices_one_by_one_selection_would(
    rl_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Affinity, a conversation's chip, every type, a chip whose burst is spent and one
    whose breaker is open: the batch chooses exactly as one select() per message does."""
    app = rl_app
    c90, c85, c70, c95 = await _chips(app, 90, 85, 70, 95)
    await breakers(app).get(f"chip:{c95.id}").force("forced_open", "test", audit.Actor("ana"))
    for i in range(app.settings.rate_limit_chip_burst):  # c85's burst window is full
        d = await ratelimit.take(app, tipo="resposta", telefone=f"+551198880{i:04d}",
                                 chip_id=c85.id)  # fmt: skip
        assert d.allowed
    med = [(await _exec(app, "INSERT INTO medicos (telefone, nome) VALUES (%s, 'Dr')"
                             " RETURNING id", tel))[0]["id"]
           for tel in ("+5511977700101", "+5511977700102")]  # fmt: skip
    await _exec(app, "INSERT INTO chip_afinidade (medico_id, chip_id, enviadas, respostas,"
                     " last_at) VALUES (%s, %s, 5, 3, now())", med[0], c70.id)  # fmt: skip
    conversa = (await _exec(app, "INSERT INTO conversas (medico_id, chip_id) VALUES (%s, %s)"
                                 " RETURNING id", med[1], c85.id))[0]["id"]  # fmt: skip
    reqs = [
        selection.Request("prospeccao", "+5511977700201", mensagem_id=1),
        selection.Request("resposta", "+5511977700101", medico_id=med[0], mensagem_id=2),
        selection.Request("resposta", "+5511977700102", med[1], conversa, mensagem_id=3),
        selection.Request("followup", "+5511977700202", mensagem_id=4),
        selection.Request("campanha", "+5511977700203", mensagem_id=5),
        selection.Request("resposta", "+5511977700204", mensagem_id=6),
        selection.Request("resposta", "+5511977700205", mensagem_id=7),
        selection.Request("prospeccao", "+5511977700201", mensagem_id=8),
        selection.Request("followup", "+5511977700101", medico_id=med[0], mensagem_id=9),
    ]

    def seen(found: selection.Selection | NoChipAvailable) -> tuple[Any, ...]:
        if isinstance(found, NoChipAvailable):
            return ("none", str(found), found.details)
        return (found.chip.id, found.motivo, found.emergency, found.threshold,
                found.candidates, found.decision.allowed)  # fmt: skip

    async def undo(found: list[selection.Selection | NoChipAvailable]) -> None:
        for f in found:  # the slots back and the pending selections gone: as before
            if isinstance(f, selection.Selection):
                await ratelimit.give_back(app, f.decision.ticket)
        await _exec(app, "DELETE FROM chip_selection_log")

    batch = await selection.select_batch(app, reqs)
    logged = await _exec(app, "SELECT mensagem_id, chosen_chip FROM chip_selection_log"
                              " ORDER BY id")  # fmt: skip
    await undo(batch)
    # one by one as before batches: each candidate's slots taken by its own ratelimit.take
    monkeypatch.setattr(ratelimit, "take_ranked", _one_at_a_time)
    one_by_one: list[selection.Selection | NoChipAvailable] = []
    for r in reqs:
        try:
            one_by_one.append(await selection.select(
                app, tipo=r.tipo, telefone=r.telefone, medico_id=r.medico_id,
                conversa_id=r.conversa_id, mensagem_id=r.mensagem_id,
            ))  # fmt: skip
        except NoChipAvailable as exc:
            one_by_one.append(exc)
    assert [seen(f) for f in batch] == [seen(f) for f in one_by_one]
    chosen = [f.chip.id if isinstance(f, selection.Selection) else None for f in batch]
    # the mix is real: affinity, the conversation's chip, spreading, and a refusal
    assert chosen[1] == c70.id and chosen[2] != c85.id  # c85 spent: not even for its conversation
    assert c85.id not in chosen and c95.id not in chosen
    assert {c90.id, c70.id} <= set(chosen)
    assert chosen[3] != chosen[5] or chosen[5] != chosen[6]  # least used spreads the batch
    assert [(r["mensagem_id"], r["chosen_chip"]) for r in logged] == list(
        zip(range(1, 10), chosen, strict=True)
    )
    why = {c["id"]: c["why"] for c in seen(batch[2])[4]}
    assert why[c85.id].startswith("rate limit chip_burst") and why[c95.id] == "circuit forced_open"


async def _one_at_a_time(app: App, takes: list[Any], *_: Any) -> list[None]:
    return [None] * len(takes)  # the caller takes each candidate's slots on its own


async def test_the_log_row_holds_every_candidate_as_the_selection_shows_it(rl_app: App) -> None:
    """Each row's candidates, written as JSON for the whole batch at once: the same
    objects, in the same order, as the selection returns."""
    app = rl_app
    await _chips(app, 85, 65, 45)
    reqs = [selection.Request("resposta", f"+55119777000{i:02d}", None, None, None)
            for i in range(3)]  # fmt: skip
    chosen = await selection.select_batch(app, reqs)
    for sel in chosen:
        assert isinstance(sel, selection.Selection)
        [row] = await _exec(app, "SELECT candidates FROM chip_selection_log WHERE id = %s",
                            sel.log_id)  # fmt: skip
        assert row["candidates"] == sel.candidates
        assert [c["trust"] for c in sel.candidates] == [85, 65, 45]
        assert {"id", "instance", "status", "trust", "afinidade", "sent_24h", "circuit",
                "why"} == set(sel.candidates[0])  # fmt: skip
    # the chip chosen first counts as used by the next message (its sent_24h went up)
    first, second = chosen[0], chosen[1]
    assert isinstance(first, selection.Selection) and isinstance(second, selection.Selection)
    used = {c["id"]: c["sent_24h"] for c in second.candidates}
    assert used[first.chip.id] == {c["id"]: c["sent_24h"] for c in first.candidates}[
        first.chip.id] + 1  # fmt: skip


async def test_a_pool_without_chips_logs_an_empty_candidate_list(app: App) -> None:
    [found] = await selection.select_batch(
        app, [selection.Request("resposta", DOCTOR, None, None, None)]
    )
    assert isinstance(found, NoChipAvailable)
    [row] = await _exec(app, "SELECT candidates, resultado FROM chip_selection_log")
    assert row == {"candidates": [], "resultado": "no_chip"}


async def test_affinity_in_a_batch_adds_migrated_replies_to_the_inbox_per_message(
    app: App,
) -> None:
    """Each message of a batch sees its own doctor's affinity to each chip: the replies
    carried over by a migration plus those in the inbox to that chip's instance (not what
    the chip sent, not other kinds); a doctor with none sees 0 everywhere."""
    a, b = await _chips(app, 85, 85)
    medico = (await _exec(app, "INSERT INTO medicos (telefone, nome) VALUES (%s, 'Dr')"
                               " RETURNING id", DOCTOR))[0]["id"]  # fmt: skip
    await _exec(app, "INSERT INTO chip_afinidade (medico_id, chip_id, enviadas, respostas,"
                     " last_at) VALUES (%s, %s, 4, 2, now())", medico, a.id)  # fmt: skip
    other = "+5511977700002"
    inbox = [(DOCTOR, a.instance, False, "mensagem"), (other, b.instance, False, "mensagem"),
             (other, a.instance, True, "mensagem"),  # what the chip sent: not a reply
             (other, a.instance, False, "chatwoot")]  # fmt: skip
    for n, (tel, instance, from_me, kind) in enumerate(inbox):
        await _exec(app, "INSERT INTO mensagens_recebidas (provider, instance,"
                         " provider_message_id, evento, kind, telefone, conversa_key, from_me,"
                         " tipo, received_at, payload)"
                         " VALUES ('evolution', %s, %s, 'messages.upsert', %s, %s, %s, %s,"
                         " 'texto', now(), '{}')",
                    instance, f"IN{n}", kind, tel, tel, from_me)  # fmt: skip
    reqs = [selection.Request("resposta", DOCTOR, medico, mensagem_id=1),
            selection.Request("resposta", other, mensagem_id=2),
            selection.Request("resposta", "+5511977700003", mensagem_id=3)]  # fmt: skip
    found = await selection.select_batch(app, reqs)
    seen = []
    for sel in found:
        assert isinstance(sel, selection.Selection)
        seen.append({c["id"]: c["afinidade"] for c in sel.candidates})
    assert seen == [{a.id: 3, b.id: 0}, {a.id: 0, b.id: 1}, {a.id: 0, b.id: 0}]
    assert [s.chip.id for s in found if isinstance(s, selection.Selection)][:2] == [a.id, b.id]
    assert found[0].motivo == "affinity (3 replies)"  # type: ignore[union-attr]
