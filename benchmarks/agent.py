"""The agent's own cost: 1,000 turns against the sandbox model at zero latency.

Each run makes a scratch database (migrated, the eval shifts seeded), 100 doctors, and
answers their turns one after another through ``julia.agent.chat.say`` with the reply
queued (a mix of greetings, searches with a tool call, acceptances that reserve,
objections; conversations grow past the summary threshold). The model is the
``julia sandbox llm`` in a background thread, over real HTTP with the real ``anthropic``
client. Prints turns per second and p50/p99 of the time Júlia adds around the model
(context, tools, validation, queueing: the turn's time minus its model calls), median
of the runs. Aim: p99 added under 15 ms.

    python benchmarks/agent.py [--turns 1000] [--runs 3]

Uses JULIA_DATABASE_URL / JULIA_REDIS_URL (else the embedded servers). Last line: JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import time
from typing import Any

from julia.agent import chat, evals
from julia.core import logs
from julia.core.app import App
from julia.sandbox import llm as sandbox_llm
from julia.settings import Settings

LINES = (
    "oi, tudo bem?",
    "tem plantão de cardiologia no sábado?",
    "quanto paga a primeira?",
    "achei o valor baixo",
    "tem algo no domingo?",
    "quero a segunda",
    "valeu!",
    "tem plantão à noite?",
    "você é um robô?",
    "tem plantão em Campinas?",
)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def one_run(settings: Settings, turns: int, url: str) -> dict[str, float]:
    async with evals.scratch(settings) as scratch:
        configured = scratch.model_copy(update={
            "anthropic_base_url": url, "llm_max_retries": 0, "llm_cache_ttl_s": 0,
            "llm_daily_token_budget": 0, "rate_limits_enabled": False,
        })  # fmt: skip
        async with App.open(configured) as app:
            await evals.seed(app)
            doctors = [f"+551198{n:07d}" for n in range(100)]
            added: list[float] = []
            started = time.perf_counter()
            for i in range(turns):
                phone = doctors[i % len(doctors)]
                line = LINES[(i // len(doctors)) % len(LINES)]
                outcome = await chat.say(app, phone, line, queue_reply=True)
                assert outcome.status == "respondido", outcome
                added.append(outcome.overhead_s * 1000)
            elapsed = time.perf_counter() - started
    return {"turns_per_s": turns / elapsed, "p50_added_ms": percentile(added, 50),
            "p99_added_ms": percentile(added, 99)}  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    logs.configure("WARNING", "console")
    logging.getLogger().setLevel(logging.WARNING)
    settings = Settings()
    runs: list[dict[str, float]] = []
    with sandbox_llm.running() as (url, _):
        for n in range(args.runs):
            r = await one_run(settings, args.turns, url)
            runs.append(r)
            print(f"run {n + 1}: {r['turns_per_s']:.0f} turns/s,"
                  f" added p50 {r['p50_added_ms']:.2f} ms,"
                  f" p99 {r['p99_added_ms']:.2f} ms")  # fmt: skip
    figures: dict[str, Any] = {k: round(statistics.median(r[k] for r in runs), 2) for k in runs[0]}
    figures |= {"turns": args.turns, "runs": args.runs}
    print(f"median: {figures['turns_per_s']} turns/s, Júlia adds p50 {figures['p50_added_ms']} ms,"
          f" p99 {figures['p99_added_ms']} ms around the model (aim: p99 < 15 ms)")  # fmt: skip
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
