"""Every Redis key Júlia writes has a TTL, so Redis memory cannot grow without bound.

The test lists the key builders in the library (every ``keys.key("<kind>", ...)``),
exercises each kind's writer against the real Redis, then checks every key under the
namespace expires. A new kind of key fails the first test until it is exercised here.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from julia.chips import sending as chip_sending
from julia.core import audit
from julia.core.app import App
from julia.core.errors import CircuitOpen
from julia.llm.model import AnthropicModel, ModelError, Request
from julia.ops import heartbeat
from julia.outbound import send
from julia.resilience import breaker, locks, ratelimit
from julia.sandbox import llm as sandbox_llm

LIBRARY = Path(__file__).resolve().parents[1] / "src" / "julia"
BUILDER = re.compile(r"""keys\.key\(\s*["']([a-z_]+)["']""")
# ratelimit builds its keys through a local alias: k = app.keys.key; k("rl", ...)
ALIASED = re.compile(r"""\bk\(\s*["']([a-z_]+)["']""")

EXERCISED = {"worker", "wa", "lock", "breaker", "rl", "llm"}


def _kinds_in_library() -> set[str]:
    kinds: set[str] = set()
    for path in LIBRARY.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        kinds |= set(BUILDER.findall(text))
        if "= app.keys.key" in text:
            kinds |= set(ALIASED.findall(text))
    return kinds


def test_every_kind_of_key_is_exercised_below() -> None:
    assert _kinds_in_library() == EXERCISED


class _Gateway:
    async def check_numbers(self, instance: str, numbers: list[str]) -> dict[str, bool]:
        return dict.fromkeys(numbers, True)


async def test_every_key_written_expires(app: App) -> None:
    with sandbox_llm.running() as (llm_url, _state):
        # the model's keys: tokens spent today and the response cache (the real client)
        budgeted = app.settings.model_copy(update={
            "anthropic_base_url": llm_url, "llm_max_retries": 0, "llm_cache_ttl_s": 60,
            "llm_daily_token_budget": 1,
        })  # fmt: skip
        llm_app = dataclasses.replace(app, settings=budgeted, extensions={})
        model = AnthropicModel(llm_app)
        await model.create(Request(system="s", messages=[{"role": "user", "content": "oi"}]))
        with pytest.raises(ModelError):  # past the budget: its alert marker is written
            await model.create(Request(system="s", messages=[{"role": "user", "content": "ok"}]))
    await heartbeat.register(app, "w-ttl", ["fila"])
    await heartbeat.beat(app, "w-ttl")
    route: Any = chip_sending.ChipSend(_Gateway(), "julia", None)  # type: ignore[arg-type]
    await send.numbers_on_whatsapp(app, route, ["5511999990001"])
    async with locks.lock(app, "ttl-test"):
        held = [k async for k in app.redis.scan_iter(match=app.keys.key("lock", "*"))]
    assert held
    async with locks.lock(app, "ttl-test-kept", renew=True):
        pass
    b = breaker.breakers(app).get("evolution")
    for _ in range(10):
        try:
            permit = await b.acquire()
        except CircuitOpen:
            break  # opened: its state key was written with the transition
        await b.record(permit, "fail", "GATEWAY_TIMEOUT")
    await breaker.force_open(app, "chip:7", "ttl", audit.Actor("t"))
    for tipo in ("prospeccao", "resposta"):
        await ratelimit.take(app, tipo=tipo, telefone="11999990001", chip_id="7")
    await ratelimit.override(app, "11999990002", "ttl", audit.Actor("t"))
    await ratelimit.status(app, telefone="11999990002")  # caches the override

    keys = [k async for k in app.redis.scan_iter(match=app.keys.pattern())]
    kinds = {str(k).split(":")[1] for k in keys}
    assert {"worker", "wa", "breaker", "rl", "llm"} <= kinds, kinds
    no_ttl = [k for k in keys if await app.redis.pttl(k) == -1]
    assert no_ttl == []
