"""Scripted conversations (YAML in ``evals/``) run against the configured model and scored.

A suite file::

    conversas:
      - nome: pede plantão de cardiologia no sábado
        medico: {especialidade: Cardiologia}
        turnos:
          - medico: Tem plantão de cardiologia no sábado?
            espera:
              ferramentas: [buscar_vagas]           # tools that must be called
              argumentos: {buscar_vagas: {dia_semana: 5}}
              contem: [Hospital São Lucas]          # must be in the reply
              nunca: [R$ 1.600]                     # must never be said
              reserva: false                        # a shift reserved by now (or not)
              handoff: false
              optout: false
              sem_ferramentas: false                # no tool at all
              guardrails: []                        # guardrail kinds that must fire

Each conversation gets its own doctor; the shifts come from :func:`seed` (dated from
the App's clock), so with the sandbox model a run is deterministic.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import yaml
from psycopg.conninfo import make_conninfo
from pydantic import SecretStr

from julia.agent import chat
from julia.agent.turn import Outcome
from julia.core import migrations
from julia.core.app import App, resolve_endpoints
from julia.core.errors import InvalidInput

if TYPE_CHECKING:
    from julia.settings import Settings

EXPECTATIONS = {"ferramentas", "argumentos", "contem", "nunca", "reserva", "handoff", "optout",
                "sem_ferramentas", "guardrails", "status"}  # fmt: skip


@dataclass(frozen=True)
class Case:
    suite: str
    nome: str
    medico: dict[str, Any]
    turnos: list[dict[str, Any]]


@dataclass
class Result:
    suite: str
    nome: str
    passed: bool
    failures: list[str] = field(default_factory=list)
    turns: list[dict[str, Any]] = field(default_factory=list)


def directory() -> Path:
    """``evals/`` of the checkout (or of the working directory)."""
    here = Path(__file__).resolve().parents[3] / "evals"
    return here if here.is_dir() else Path.cwd() / "evals"


@asynccontextmanager
async def scratch(settings: Settings) -> AsyncIterator[Settings]:
    """A throwaway database (migrated) and Redis namespace on the configured servers, so
    an eval's doctors and shifts never reach the real ones; dropped afterwards."""
    endpoints = await asyncio.to_thread(resolve_endpoints, settings)
    name = f"julia_eval_{uuid.uuid4().hex[:10]}"
    admin = await psycopg.AsyncConnection.connect(endpoints.database_url, autocommit=True)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = make_conninfo(endpoints.database_url, dbname=name)
        try:
            await migrations.migrate(url)
            yield settings.model_copy(update={
                "database_url": SecretStr(url), "redis_url": SecretStr(endpoints.redis_url),
                "redis_namespace": f"{settings.redis_namespace}-{name}",
            })  # fmt: skip
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def load(suite: str | None = None, folder: Path | None = None) -> list[Case]:
    folder = folder or directory()
    files = sorted(folder.glob("*.yaml"))
    if suite is not None:
        files = [f for f in files if f.stem == suite]
        if not files:
            names = ", ".join(f.stem for f in sorted(folder.glob("*.yaml")))
            raise InvalidInput(f"no eval suite {suite!r} (suites: {names})")
    cases: list[Case] = []
    for f in files:
        data = yaml.safe_load(f.read_text()) or {}
        for c in data.get("conversas") or []:
            turnos = c.get("turnos") or []
            for t in turnos:
                unknown = set(t.get("espera") or {}) - EXPECTATIONS
                if unknown or not isinstance(t.get("medico"), str):
                    raise InvalidInput(f"{f.name}: {c.get('nome')!r}: bad turn {t!r}")
            cases.append(Case(f.stem, str(c["nome"]), dict(c.get("medico") or {}), turnos))
    return cases


async def seed(app: App) -> None:
    """Shifts for the suites: cardiology next Saturday (two hospitals), next Sunday,
    pediatrics on Saturday, one Saturday cardiology shift already taken."""
    today = app.clock.now().date()
    sabado = today + timedelta(days=(5 - today.weekday()) % 7 or 7)
    domingo = sabado + timedelta(days=1)
    rows = [
        ("Hospital São Lucas", "Campinas", "Cardiologia", sabado, "19:00", "07:00", "noturno", 1800, "aberta"),  # noqa: E501
        ("Hospital Santa Marta", "São Paulo", "Cardiologia", sabado, "07:00", "19:00", "diurno", 1500, "aberta"),  # noqa: E501
        ("Hospital São Lucas", "Campinas", "Cardiologia", domingo, "07:00", "19:00", "diurno", 1600, "aberta"),  # noqa: E501
        ("Hospital Vida", "Santos", "Pediatria", sabado, "07:00", "13:00", "manha", 900, "aberta"),
        ("Hospital Vida", "Santos", "Cardiologia", sabado, "13:00", "19:00", "tarde", 1200, "cancelada"),  # noqa: E501
    ]  # fmt: skip
    async with app.pool.connection() as conn, conn.transaction():
        for hosp, cidade, esp, dia, ini, fim, per, valor, status in rows:
            await conn.execute("INSERT INTO especialidades (nome) VALUES (%s) ON CONFLICT DO NOTHING",  # noqa: E501
                               (esp,))  # fmt: skip
            await conn.execute("INSERT INTO hospitais (nome, cidade, uf) VALUES (%s, %s, 'SP')"
                               " ON CONFLICT DO NOTHING", (hosp, cidade))  # fmt: skip
            await conn.execute(
                "INSERT INTO vagas (hospital_id, especialidade_id, data, inicio, fim, periodo,"
                " valor, status) SELECT h.id, e.id, %s, %s, %s, %s, %s, %s FROM hospitais h,"
                " especialidades e WHERE lower(h.nome) = lower(%s) AND lower(e.nome) = lower(%s)",
                (dia, ini, fim, per, valor, status, hosp, esp),
            )


async def _doctor(app: App, n: int, medico: dict[str, Any]) -> str:
    phone = f"+551190{n:07d}"
    async with app.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO medicos (telefone, nome, especialidade_id) VALUES (%s, %s,"
            " (SELECT id FROM especialidades WHERE lower(nome) = lower(%s)))"
            " ON CONFLICT (telefone) DO NOTHING",
            (phone, medico.get("nome", "Ana Souza"), medico.get("especialidade", "Cardiologia")),
        )
    return phone


async def _state(app: App, phone: str) -> dict[str, bool]:
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT m.opted_out, EXISTS (SELECT 1 FROM vagas v WHERE v.reservada_por = m.id)"
            " AS reserva, EXISTS (SELECT 1 FROM conversas c WHERE c.medico_id = m.id"
            " AND c.controlled_by = 'humano') AS handoff FROM medicos m WHERE m.telefone = %s",
            (phone,),
        )
        row = await cur.fetchone()
    assert row is not None
    return {"optout": row["opted_out"], "reserva": row["reserva"], "handoff": row["handoff"]}


def _score(espera: dict[str, Any], outcome: Outcome, state: dict[str, bool]) -> list[str]:
    failures: list[str] = []
    reply = (outcome.resposta or "").lower()
    called = [c["name"] for c in outcome.tool_calls]
    for name in espera.get("ferramentas") or []:
        if name not in called:
            failures.append(f"expected tool {name}, got {called or 'none'}")
    if espera.get("sem_ferramentas") and called:
        failures.append(f"expected no tool, got {called}")
    for name, args in (espera.get("argumentos") or {}).items():
        inputs = [c["input"] or {} for c in outcome.tool_calls if c["name"] == name]
        if not any(all(i.get(k) == v for k, v in args.items()) for i in inputs):
            failures.append(f"expected {name} with {args}, got {inputs}")
    for text in espera.get("contem") or []:
        if str(text).lower() not in reply:
            failures.append(f"reply lacks {text!r}")
    for text in espera.get("nunca") or []:
        if str(text).lower() in reply:
            failures.append(f"reply says {text!r}")
    for key in ("reserva", "handoff", "optout"):
        if key in espera and bool(espera[key]) != state[key]:
            failures.append(f"expected {key}={espera[key]}, got {state[key]}")
    for kind in espera.get("guardrails") or []:
        if kind not in outcome.guardrails:
            failures.append(f"expected guardrail {kind}, got {outcome.guardrails}")
    if "status" in espera and espera["status"] != outcome.status:
        failures.append(f"expected status {espera['status']}, got {outcome.status}")
    return failures


async def run(app: App, cases: list[Case]) -> list[Result]:
    """Run every case, each with its own doctor; the shifts are seeded first."""
    await seed(app)
    results: list[Result] = []
    for n, case in enumerate(cases, 1):
        async with app.pool.connection() as conn:  # every case starts from the same shifts
            await conn.execute(
                "UPDATE vagas SET status = 'aberta', reservada_por = NULL, reservada_em = NULL"
                " WHERE status IN ('reservada', 'confirmada')"
            )
        phone = await _doctor(app, n, case.medico)
        result = Result(case.suite, case.nome, True)
        for t in case.turnos:
            outcome = await chat.say(app, phone, t["medico"])
            state = await _state(app, phone)
            failures = _score(t.get("espera") or {}, outcome, state)
            result.turns.append({"medico": t["medico"], "resposta": outcome.resposta,
                                 "tools": [c["name"] for c in outcome.tool_calls],
                                 "guardrails": outcome.guardrails, "falhas": failures})  # fmt: skip
            result.failures += [f"turn {len(result.turns)}: {f}" for f in failures]
        result.passed = not result.failures
        results.append(result)
    return results


def totals(results: list[Result]) -> dict[str, int]:
    passed = sum(1 for r in results if r.passed)
    return {"total": len(results), "passed": passed, "failed": len(results) - passed}
