"""Shared pieces of the agent tests: an App wired to the sandbox model (real HTTP, the real
``anthropic`` client) and the sandbox gateway, the shim in-process, seed shifts, and a
``say`` that posts a doctor's burst and runs the turn it makes."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from shim.app import create_app

from julia.core.app import App
from julia.core.clock import FrozenClock
from julia.fila import queue
from julia.inbox import consumer
from julia.inbox.consumer import Turn
from julia.outbound import send
from julia.sandbox import llm as sandbox_llm
from julia.sandbox.gateway import running as gateway_running
from julia.settings import Settings

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TEXT = json.loads((FIXTURES / "evolution_messages_upsert_text.json").read_text())
_seq = iter(range(1, 10**7))

#: Monday 2026-01-05 12:00 UTC is 09:00 in São Paulo (the FrozenClock's start).
SABADO = date(2026, 1, 10)
DOMINGO = date(2026, 1, 11)


def upsert(text: str, phone: str) -> dict[str, Any]:
    body = copy.deepcopy(TEXT)
    body["data"]["key"] = {"remoteJid": f"{phone[1:]}@s.whatsapp.net", "fromMe": False,
                           "id": f"AG{next(_seq):09d}"}  # fmt: skip
    body["data"]["message"] = {"conversation": text}
    body["data"]["pushName"] = "Dra. Ana"
    body["data"].pop("messageTimestamp", None)
    return body


@dataclass
class Kit:
    app: App
    clock: FrozenClock
    shim: httpx.AsyncClient
    llm_url: str
    llm: sandbox_llm.LLMState
    gateway_url: str

    def fault(self, **fault: Any) -> None:
        httpx.post(self.llm_url + "/_sandbox/faults", json=fault, timeout=5).raise_for_status()

    def clear(self) -> None:
        httpx.delete(self.llm_url + "/_sandbox/faults", timeout=5).raise_for_status()

    async def post(self, phone: str, *texts: str) -> None:
        for text in texts:
            r = await self.shim.post("/webhooks/evolution", json=upsert(text, phone))
            assert r.status_code == 200 and r.json()["status"] == "accepted", r.text

    async def say(self, phone: str, *texts: str) -> Turn:
        await self.post(phone, *texts)
        self.clock.advance(5)
        turn = await consumer.step(self.app, "w1")
        assert turn is not None and turn.erro is None, turn
        return turn

    async def rows(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        async with self.app.pool.connection() as conn:
            cur = await conn.execute(sql, params)
            return list(await cur.fetchall())

    async def replies(self, phone: str) -> list[str]:
        rows = await self.rows(
            "SELECT texto FROM fila_mensagens WHERE telefone = %s AND tipo = 'resposta'"
            " ORDER BY id", phone)  # fmt: skip
        return [r["texto"] for r in rows]

    async def last_turn(self, phone: str) -> dict[str, Any]:
        rows = await self.rows(
            "SELECT a.* FROM agent_turnos a JOIN medicos m ON m.id = a.medico_id"
            " WHERE m.telefone = %s ORDER BY a.id DESC LIMIT 1", phone)  # fmt: skip
        assert rows, "no agent turn"
        return rows[0]

    async def send_all(self) -> send.BatchReport:
        batch = await queue.claim(self.app, "sender", 100)
        return await send.process_batch(self.app, "sender", batch)

    def sent(self) -> list[dict[str, Any]]:
        return list(httpx.get(self.gateway_url + "/_sandbox/messages", timeout=5).json())


async def seed(app: App) -> dict[str, int]:
    """Cardiology on Saturday at two hospitals, one on Sunday, pediatrics on Saturday,
    one Saturday cardiology shift already reserved; a cardiologist and a pediatrician."""
    async with app.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO especialidades (nome) VALUES ('Cardiologia'), ('Pediatria')"
            " ON CONFLICT DO NOTHING")  # fmt: skip
        await conn.execute(
            "INSERT INTO hospitais (nome, cidade, uf) VALUES ('Hospital São Lucas', 'Campinas',"
            " 'SP'), ('Hospital Santa Marta', 'São Paulo', 'SP'), ('Hospital Vida', 'Santos', 'SP')"
            " ON CONFLICT DO NOTHING")  # fmt: skip
        ids: dict[str, int] = {}
        for key, hosp, esp, dia, ini, fim, per, valor in (
            ("sab_lucas", "Hospital São Lucas", "Cardiologia", SABADO, "19:00", "07:00", "noturno", 1800),  # noqa: E501
            ("sab_marta", "Hospital Santa Marta", "Cardiologia", SABADO, "07:00", "19:00", "diurno", 1500),  # noqa: E501
            ("dom_lucas", "Hospital São Lucas", "Cardiologia", DOMINGO, "07:00", "19:00", "diurno", 1600),  # noqa: E501
            ("sab_ped", "Hospital Vida", "Pediatria", SABADO, "07:00", "13:00", "manha", 900),
            ("sab_taken", "Hospital Vida", "Cardiologia", SABADO, "13:00", "19:00", "tarde", 1200),
        ):  # fmt: skip
            cur = await conn.execute(
                "INSERT INTO vagas (hospital_id, especialidade_id, data, inicio, fim, periodo, valor)"  # noqa: E501
                " SELECT h.id, e.id, %s, %s, %s, %s, %s FROM hospitais h, especialidades e"
                " WHERE h.nome = %s AND e.nome = %s RETURNING id",
                (dia, ini, fim, per, valor, hosp, esp),
            )  # fmt: skip
            row = await cur.fetchone()
            assert row is not None
            ids[key] = row["id"]
        for phone, nome, esp in (("+5511911110001", "Ana Souza", "Cardiologia"),
                                 ("+5511911110002", "Bruno Lima", "Cardiologia"),
                                 ("+5511911110003", "Carla Dias", "Pediatria")):  # fmt: skip
            await conn.execute(
                "INSERT INTO medicos (telefone, nome, especialidade_id) SELECT %s, %s, id"
                " FROM especialidades WHERE nome = %s", (phone, nome, esp))  # fmt: skip
        await conn.execute(
            "UPDATE vagas SET status = 'reservada', reservada_por = (SELECT id FROM medicos"
            " WHERE telefone = '+5511911110003'), reservada_em = now() WHERE id = %s",
            (ids["sab_taken"],),
        )
    return ids


@pytest.fixture
def sandbox_llm_server() -> Iterator[tuple[str, sandbox_llm.LLMState]]:
    with sandbox_llm.running() as (url, state):
        yield url, state


@pytest.fixture
async def kit(
    settings: Settings, clock: FrozenClock, sandbox_llm_server: tuple[str, Any]
) -> AsyncIterator[Kit]:
    url, state = sandbox_llm_server
    with gateway_running() as (gateway_url, _):
        configured = settings.model_copy(update={
            "evolution_url": gateway_url, "rate_limits_enabled": False,
            "anthropic_base_url": url, "llm_max_retries": 0, "llm_cache_ttl_s": 0,
            "agent_message_delay_s": 0,
        })  # fmt: skip
        async with App.open(configured, clock=clock) as app:
            transport = httpx.ASGITransport(app=create_app(julia=app))
            async with httpx.AsyncClient(transport=transport, base_url="http://shim") as shim:
                yield Kit(app, clock, shim, url, state, gateway_url)
