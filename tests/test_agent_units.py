"""The agent's pure parts and the model adapter's cache, through the real client."""

from __future__ import annotations

from decimal import Decimal

import httpx

from agent_kit import Kit
from julia.agent.state import Facts
from julia.agent.validate import SAFE, check, split
from julia.llm.model import AnthropicModel, Request


def facts() -> Facts:
    f = Facts()
    f.add_vaga({"valor": "1800.00", "data": "2026-01-10", "hospital": "Hospital São Lucas"})
    return f


def test_the_validator_allows_what_tools_returned_and_catches_the_rest() -> None:
    known = {"hospital sao lucas", "hospital vida"}
    ok = check("Tenho no Hospital São Lucas, sábado 10/01, R$ 1.800. Quer?", facts(),
               known_hospitals=known)  # fmt: skip
    assert ok.violations == ()
    cases = {
        "Paga R$ 2.000 no Hospital São Lucas": "valor",
        "Tem no Hospital Vida sábado": "vaga",
        "Tem no Hospital Fantasia também": "vaga",
        "E no dia 11/01 também": "vaga",
        "Minhas regras (nada nas mensagens...) dizem vaga_id 3": "interno",
        "Liga pro +55 11 98888-7777": "interno",
        "Garanto que o pagamento sai amanhã": "promessa",
        "Sou humana, pode confiar": "humano",
    }
    for reply, kind in cases.items():
        verdict = check(reply, facts(), known_hospitals=known)
        assert verdict.violations[:1] == (kind,), reply
        assert verdict.reply == SAFE[kind]


def test_split_gives_whatsapp_sized_messages() -> None:
    long = " ".join(f"Frase número {i} sobre o plantão." for i in range(40))
    parts = split(long + "\n\nQuer que eu reserve?", chars=120, most=4)
    assert 1 < len(parts) <= 4 and all(len(p) <= 120 for p in parts[:-1])
    assert split("Oi!\n\nTudo bem?", chars=350, most=4) == ["Oi!\n\nTudo bem?"]
    assert Decimal("1800.00") in facts().valores


async def test_an_identical_request_is_answered_from_the_cache_once_paid(kit: Kit) -> None:
    kit.app.settings = kit.app.settings.model_copy(update={"llm_cache_ttl_s": 300})
    model = AnthropicModel(kit.app)
    request = Request(system="Você é a Júlia.", messages=[{"role": "user", "content": "oi"}])
    first = await model.create(request)
    again = await model.create(request)
    assert not first.cached and again.cached and again.content == first.content
    assert kit.llm.received == 1
    other = await model.create(
        Request(system="Você é a Júlia.", messages=[{"role": "user", "content": "olá"}])
    )
    assert not other.cached and kit.llm.received == 2


def test_the_sandbox_model_speaks_the_error_shapes(sandbox_llm_server: tuple[str, object]) -> None:
    url = sandbox_llm_server[0]
    httpx.post(url + "/_sandbox/faults", json={"status": 429, "count": 1}, timeout=5)
    body = {"model": "m", "max_tokens": 50, "messages": [{"role": "user", "content": "oi"}]}
    r = httpx.post(url + "/v1/messages", json=body, timeout=5)
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    assert r.json()["error"]["type"] == "rate_limit_error"
    r = httpx.post(url + "/v1/messages", json=body, timeout=5)  # count=1: over
    assert r.status_code == 200 and r.json()["stop_reason"] == "end_turn"
    assert r.json()["content"][0]["type"] == "text" and r.json()["usage"]["output_tokens"] > 0
    short = {**body, "max_tokens": 1}
    assert httpx.post(url + "/v1/messages", json=short, timeout=5).json()[
        "stop_reason"] == "max_tokens"  # fmt: skip
