"""The agent when things go wrong: a slow model, an inventing model, a 529 storm, doctor
text that tries to give orders, bursts and messages that arrive mid-turn, a person who
takes over mid-turn, after hours, no model at all, the budget spent."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from agent_kit import Kit, seed
from julia.agent import pending
from julia.agent.turn import FALLBACK
from julia.inbox import consumer
from julia.llm.model import AnthropicModel, Request, Response
from julia.ops import health
from julia.resilience.breaker import breakers

ANA, BRUNO = "+5511911110001", "+5511911110002"


def settings_of(kit: Kit, **changes: Any) -> None:
    kit.app.settings = kit.app.settings.model_copy(update=changes)


async def test_a_model_slower_than_the_deadline_gets_the_fallback_and_a_review(kit: Kit) -> None:
    await seed(kit.app)
    settings_of(kit, agent_turn_deadline_s=0.5)
    kit.fault(latency_ms=1500)
    turn = await kit.say(ANA, "tem plantão de cardiologia?")
    assert turn.status == "respondido"
    assert await kit.replies(ANA) == [FALLBACK]
    t = await kit.last_turn(ANA)
    assert (t["status"], t["motivo"]) == ("fallback", "timeout")
    assert (await kit.rows("SELECT revisar FROM conversas"))[0]["revisar"] is True


@pytest.mark.parametrize(
    ("mode", "kind"), [("valor", "valor"), ("vaga", "vaga"), ("humano", "humano")]
)
async def test_an_invented_value_or_shift_or_a_human_claim_is_caught(
    kit: Kit, mode: str, kind: str
) -> None:
    await seed(kit.app)
    kit.fault(invent=mode)
    text = "você é um robô?" if mode == "humano" else "tem plantão de cardiologia no sábado?"
    await kit.say(ANA, text)
    t = await kit.last_turn(ANA)
    assert kind in t["guardrails"]
    sent = "\n".join(await kit.replies(ANA))
    assert "R$ 9.999" not in sent and "Fantasia" not in sent and "R$ 2.300" not in sent
    assert "pessoa de verdade" not in sent


async def test_a_529_storm_opens_the_breaker_falls_back_then_recovers(kit: Kit) -> None:
    await seed(kit.app)
    kit.fault(status=529)
    phones = [f"+55119222200{i:02d}" for i in range(7)]
    for phone in phones[:5]:  # one doctor each: repeated fallbacks would hand them over
        await kit.say(phone, "oi, tem plantão?")
        assert await kit.replies(phone) == [FALLBACK]
    assert (await breakers(kit.app).get("anthropic").status()).state == "open"
    before = kit.llm.received
    await kit.say(phones[5], "oi, tem plantão?")
    assert kit.llm.received == before  # refused by the open breaker: no call made
    assert (await kit.last_turn(phones[5]))["motivo"] == "unavailable"
    kit.clear()
    kit.clock.advance(kit.app.settings.breaker_open_base_s + 1)
    await kit.say(phones[6], "oi, tem plantão de cardiologia?")
    assert (await kit.last_turn(phones[6]))["status"] == "respondido"
    assert (await breakers(kit.app).get("anthropic").status()).state == "closed"
    assert "Tenho" in (await kit.replies(phones[6]))[0]


async def test_three_fallbacks_in_a_row_hand_the_conversation_to_a_person(kit: Kit) -> None:
    await seed(kit.app)
    kit.fault(status=500)
    settings_of(kit, breaker_failure_threshold=100, breaker_min_calls=100)
    for text in ("oi", "tem plantão?", "alô?"):
        await kit.say(ANA, text)
    assert (await kit.rows("SELECT controlled_by FROM conversas"))[0]["controlled_by"] == "humano"
    assert "alguém da equipe" in (await kit.replies(ANA))[-1]
    events = await kit.rows("SELECT props FROM business_events WHERE tipo = 'handoff'")
    assert events[0]["props"]["gatilho"] == "agent.fallbacks"


async def test_a_malformed_body_is_a_fallback_not_a_crash(kit: Kit) -> None:
    await seed(kit.app)
    kit.fault(malformed=True)
    turn = await kit.say(ANA, "tem plantão?")
    assert turn.status == "respondido" and await kit.replies(ANA) == [FALLBACK]


async def test_a_burst_of_three_gets_one_reply(kit: Kit) -> None:
    await seed(kit.app)
    turn = await kit.say(ANA, "oi", "tudo bem?", "tem plantão de cardiologia no sábado?")
    assert len(turn.mensagens) == 3
    turns = await kit.rows("SELECT mensagens FROM agent_turnos")
    assert len(turns) == 1 and len(turns[0]["mensagens"]) == 3
    replies = await kit.replies(ANA)
    assert len(replies) == 1 and "Tenho 2 opções" in replies[0]
    assert await consumer.step(kit.app, "w1") is None  # nothing left to answer


class MidTurn(AnthropicModel):
    """Delegates to the real adapter; on its first call something happens mid-turn."""

    def __init__(self, kit: Kit, action: str) -> None:
        super().__init__(kit.app)
        self.kit, self.action, self.done = kit, action, False

    async def create(self, request: Request) -> Response:
        if not self.done:
            self.done = True
            if self.action == "message":
                await self.kit.post(ANA, "no sábado à noite, de preferência")
            else:
                async with self.kit.app.pool.connection() as conn:
                    await conn.execute("UPDATE conversas SET controlled_by = 'humano'")
        return await super().create(request)


async def test_a_message_mid_turn_is_included_not_answered_twice(kit: Kit) -> None:
    await seed(kit.app)
    kit.app.extensions["llm_model"] = MidTurn(kit, "message")
    first = await kit.say(ANA, "tem plantão de cardiologia?")
    assert first.status == "refeito" and await kit.replies(ANA) == []
    kit.clock.advance(5)
    again = await consumer.step(kit.app, "w1")
    assert again is not None and again.status == "respondido" and len(again.mensagens) == 2
    last = kit.llm.requests[-2]["messages"][-1]["content"]
    assert "tem plantão de cardiologia?" in last and "no sábado à noite" in last
    assert len(await kit.replies(ANA)) == 1
    assert len(await kit.rows("SELECT 1 FROM agent_turnos")) == 1


async def test_a_person_who_takes_over_mid_turn_gets_silence(kit: Kit) -> None:
    await seed(kit.app)
    kit.app.extensions["llm_model"] = MidTurn(kit, "human")
    await kit.say(ANA, "tem plantão de cardiologia?")
    assert await kit.replies(ANA) == []
    assert (await kit.last_turn(ANA))["status"] == "humano"


async def test_after_hours_turns_are_answered_at_opening(kit: Kit) -> None:
    await seed(kit.app)
    kit.clock.set(datetime(2026, 1, 6, 1, 0, tzinfo=UTC))  # 22:00 in São Paulo
    turn = await kit.say(ANA, "tem plantão de cardiologia no sábado?")
    assert turn.status == "agendado"
    assert len(await kit.replies(ANA)) == 1  # the out-of-hours acknowledgement only
    assert (await pending.answer_due(kit.app)).turnos == 0  # not before the opening
    kit.clock.set(datetime(2026, 1, 6, 11, 1, tzinfo=UTC))  # 08:01
    done = await pending.answer_due(kit.app)
    assert (done.conversas, done.turnos) == (1, 1)
    assert "Tenho 2 opções" in (await kit.replies(ANA))[-1]
    status = await kit.rows("SELECT status FROM inbox_turnos")
    assert status == [{"status": "respondido"}]
    assert (await pending.answer_due(kit.app)).turnos == 0


async def test_no_model_turns_wait_one_alert_health_says_why(kit: Kit) -> None:
    await seed(kit.app)
    settings_of(kit, anthropic_base_url=None)
    for text in ("oi", "tem plantão?"):
        turn = await kit.say(ANA, text)
        assert turn.status == "aguardando_resposta"
    assert await kit.replies(ANA) == []
    alerts = await kit.rows("SELECT kind, repeats FROM alerts WHERE kind = 'agent.no_model'")
    assert len(alerts) == 1 and alerts[0]["repeats"] <= 1
    kit.clock.advance(minutes=6)
    assert [r.alert.kind for r in await pending.check_unanswered(kit.app)] == ["agent.unanswered"]
    report = await health.check(kit.app)
    agent = report.component("agent")
    assert agent.details["unanswered"] == 2 and "no model configured" in agent.summary
    # a model arrives: the waiting turns get one reply
    settings_of(kit, anthropic_base_url=kit.llm_url)
    done = await pending.answer_due(kit.app)
    assert (done.conversas, done.turnos) == (1, 2)
    assert len(await kit.replies(ANA)) == 1


async def test_past_the_daily_budget_turns_fall_back_and_one_alert(kit: Kit) -> None:
    await seed(kit.app)
    settings_of(kit, llm_daily_token_budget=10)
    await kit.say(ANA, "tem plantão de cardiologia?")  # spends more than 10
    await kit.say(BRUNO, "tem plantão de cardiologia?")
    await kit.say(BRUNO, "oi?")
    assert await kit.replies(BRUNO) == [FALLBACK, FALLBACK]
    assert (await kit.last_turn(BRUNO))["motivo"] == "budget"
    alerts = await kit.rows("SELECT kind FROM alerts WHERE kind = 'llm.budget'")
    assert len(alerts) == 1
