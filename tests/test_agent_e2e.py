"""The agent end to end: webhooks in through the shim, the inbox's turn, the real
``anthropic`` client against the sandbox model over HTTP, tools on real Postgres, the
reply queued and sent through the sandbox gateway."""

from __future__ import annotations

from agent_kit import SABADO, Kit, seed

ANA, BRUNO = "+5511911110001", "+5511911110002"


async def test_saturday_cardiology_shift_offered_reserved_and_confirmed(kit: Kit) -> None:
    ids = await seed(kit.app)
    turn = await kit.say(ANA, "Oi! Tem plantão de cardiologia no sábado?")
    assert turn.status == "respondido"
    offer = "\n".join(await kit.replies(ANA))
    # exactly the open Saturday cardiology shifts: not Sunday, not pediatrics, not the taken one
    assert "Hospital São Lucas" in offer and "Hospital Santa Marta" in offer
    assert "R$ 1.800" in offer and "R$ 1.500" in offer
    assert "Hospital Vida" not in offer and "R$ 1.600" not in offer
    assert f"{SABADO:%d/%m}" in offer
    offered = await kit.rows("SELECT vaga_id FROM agent_ofertas ORDER BY vaga_id")
    assert [r["vaga_id"] for r in offered] == sorted([ids["sab_lucas"], ids["sab_marta"]])

    await kit.say(ANA, "Quero a primeira, pode reservar")
    vaga = (await kit.rows("SELECT v.status, m.telefone FROM vagas v JOIN medicos m"
                           " ON m.id = v.reservada_por WHERE v.id = %s",
                           ids["sab_marta"]))[0]  # fmt: skip
    assert vaga == {"status": "reservada", "telefone": ANA}
    event = await kit.rows("SELECT tipo FROM business_events WHERE vaga_id = %s", ids["sab_marta"])
    assert [e["tipo"] for e in event] == ["vaga_reservada"]
    confirmation = (await kit.replies(ANA))[-1]
    # the first one listed (07:00 comes before 19:00)
    assert "reservei" in confirmation and "Hospital Santa Marta" in confirmation

    report = await kit.send_all()
    assert report.sent == len(await kit.replies(ANA))
    sent = [m["text"] for m in kit.sent()]
    assert confirmation in sent
    turno = await kit.last_turn(ANA)
    assert [c["name"] for c in turno["tool_calls"]] == ["reservar_vaga"]
    assert turno["usage"]["output_tokens"] > 0
    # the stable prefix was marked for caching: the second call read it from the cache
    assert turno["usage"]["cache_read_input_tokens"] > 0
    req = kit.llm.requests[-1]
    assert req["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" in req["tools"][-1]


async def test_the_last_shift_goes_to_one_doctor_the_other_is_offered_the_next(kit: Kit) -> None:
    ids = await seed(kit.app)
    async with kit.app.pool.connection() as conn:  # only one Saturday night left
        await conn.execute(
            "UPDATE vagas SET status = 'cancelada' WHERE id = %s", (ids["sab_marta"],)
        )
    for phone in (ANA, BRUNO):
        await kit.say(phone, "tem plantão de cardiologia sábado à noite?")
    await kit.post(ANA, "quero essa, pode reservar")
    await kit.post(BRUNO, "quero essa, pode reservar")
    kit.clock.advance(5)
    import asyncio

    from julia.inbox import consumer

    turns = await asyncio.gather(consumer.step(kit.app, "w1"), consumer.step(kit.app, "w2"))
    assert all(t is not None and t.status == "respondido" for t in turns)
    owner = await kit.rows("SELECT m.telefone FROM vagas v JOIN medicos m ON m.id = v.reservada_por"
                           " WHERE v.id = %s", ids["sab_lucas"])  # fmt: skip
    assert len(owner) == 1
    winner = owner[0]["telefone"]
    loser = BRUNO if winner == ANA else ANA
    assert "reservei" in (await kit.replies(winner))[-1]
    told = "\n".join((await kit.replies(loser))[-2:])
    assert "acabou de ser preenchida" in told
    assert (
        "Hospital São Lucas" in told and f"{ids['dom_lucas']}" not in told
    )  # the Sunday one, no ids
    assert "R$ 1.600" in told
    events = await kit.rows(
        "SELECT count(*) AS n FROM business_events WHERE tipo = 'vaga_reservada'"
    )
    assert events[0]["n"] == 1
