"""Simulated doctors: they read what the sandbox gateway delivered to their number and
answer through its real webhook (``POST /_sandbox/incoming``), each with a behaviour.

A doctor's script is a list of steps. The first step is due a while after Júlia's
first message reaches them; each later step is due after Júlia answers the previous
one, or after a patience timeout when she does not (so a script plays out the same
with or without an agent). Times are story minutes on the demo's compressed clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from julia.core import phones


@dataclass(frozen=True)
class Step:
    texts: tuple[str, ...] = ()
    audio: bool = False
    #: Story minutes the doctor takes before this step.
    delay_min: float = 2.0


@dataclass(frozen=True)
class Persona:
    name: str
    steps: tuple[Step, ...]


PERSONAS: dict[str, Persona] = {
    p.name: p
    for p in (
        Persona(
            "aceita",
            (
                Step(("Oi! Tenho interesse sim. Quais plantões você tem pra mim?",), delay_min=1),
                Step(("Quero o primeiro plantão que você falou. Pode reservar pra mim?",)),
                Step(("Perfeito, obrigado!",)),
            ),
        ),
        Persona(
            "interessado",
            (
                Step(("Olá, tenho interesse. Me conta mais?",)),
                Step(("Legal. Pode me mandar os detalhes por aqui?",)),
            ),
        ),
        Persona(
            "pergunta",
            (
                Step(("Qual o valor do plantão? O pagamento é PJ?",)),
                Step(("E o hospital tem estacionamento?",)),
            ),
        ),
        Persona("recusa", (Step(("Obrigado, mas estou sem agenda este mês.",)),)),
        Persona(
            "objecao_valor",
            (
                Step(
                    ("Esse valor está baixo, em outro hospital pagam R$ 1.800 pelo mesmo turno.",)
                ),
                Step(("Se melhorar o valor eu topo.",)),
            ),
        ),
        Persona("pede_humano", (Step(("Quero falar com uma pessoa, por favor.",), delay_min=1),)),
        Persona("optout", (Step(("Pare de me mandar mensagem.",)),)),
        Persona(
            "rajada", (Step(("oi", "tudo bem?", "vi sua msg", "qual hospital?", "e o valor?")),)
        ),
        Persona(
            "audio",
            (
                Step(audio=True),
                Step(("Desculpa o áudio! Tenho interesse, qual o valor?",)),
            ),
        ),
        Persona("silencioso", ()),
    )
}

#: How many doctors of the campaign behave each way (the rest never answer). The
#: accepting and hand-off doctors come first, so their stories finish in a short run.
MIX: tuple[tuple[str, int], ...] = (
    ("aceita", 3),
    ("pede_humano", 2),
    ("interessado", 4),
    ("pergunta", 4),
    ("recusa", 4),
    ("objecao_valor", 3),
    ("optout", 3),
    ("rajada", 2),
    ("audio", 2),
    ("aceita", 3),
)


def cast(numbers: Sequence[str]) -> dict[str, str]:
    """E.164 number → persona name, in campaign order (MIX first, then silencioso)."""
    names = [name for name, n in MIX for _ in range(n)]
    return {num: (names[i] if i < len(names) else "silencioso") for i, num in enumerate(numbers)}


@dataclass
class Doctor:
    number: str  # digits, as the gateway sees it
    persona: Persona
    nome: str
    next_step: int = 0
    due_at: float | None = None
    instance: str | None = None
    seen: int = 0
    waiting_since: float | None = None


@dataclass
class Simulator:
    """Polls the sandbox's record of sent messages and plays each doctor's script."""

    gateway_url: str
    minute_s: float  # real seconds per story minute
    doctors: dict[str, Doctor] = field(default_factory=dict)
    posted: list[dict[str, Any]] = field(default_factory=list)  # every webhook we caused
    failures: list[str] = field(default_factory=list)
    seed: int = 7

    def add(self, telefone: str, persona: str, nome: str) -> None:
        digits = phones.digits(telefone)
        self.doctors[digits] = Doctor(digits, PERSONAS[persona], nome)

    def behaviours(self) -> dict[str, int]:
        return dict(Counter(d.persona.name for d in self.doctors.values()))

    async def run(self, stop: asyncio.Event) -> None:
        rng = random.Random(self.seed)
        async with httpx.AsyncClient(base_url=self.gateway_url, timeout=10) as http:
            while not stop.is_set():
                try:
                    await self._tick(http, rng)
                except httpx.HTTPError as exc:  # the gateway restarting: try again
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.25)

    async def _tick(self, http: httpx.AsyncClient, rng: random.Random) -> None:
        sent = (await http.get("/_sandbox/messages")).json()
        by_number: dict[str, list[dict[str, Any]]] = {}
        for m in sent:
            by_number.setdefault(m["number"], []).append(m)
        now = time.monotonic()
        for number, doctor in self.doctors.items():
            got = by_number.get(number, [])
            if len(got) > doctor.seen:
                doctor.seen = len(got)
                doctor.instance = got[-1]["instance"]  # answer on the chip that wrote
                if doctor.due_at is None and doctor.next_step < len(doctor.persona.steps):
                    step = doctor.persona.steps[doctor.next_step]
                    jitter = rng.uniform(0.8, 1.3)
                    doctor.due_at = now + step.delay_min * jitter * self.minute_s
            elif (
                doctor.due_at is None
                and doctor.waiting_since is not None
                and doctor.next_step < len(doctor.persona.steps)
                and now - doctor.waiting_since > 6 * self.minute_s  # patience: Júlia is quiet
            ):
                doctor.due_at = now + self.minute_s
            if doctor.due_at is not None and now >= doctor.due_at:
                await self._play(http, doctor)

    async def _play(self, http: httpx.AsyncClient, doctor: Doctor) -> None:
        step = doctor.persona.steps[doctor.next_step]
        doctor.next_step += 1
        doctor.due_at = None
        doctor.waiting_since = time.monotonic()
        bodies: list[dict[str, Any]] = (
            [{"audio": True}] if step.audio else [{"text": t} for t in step.texts]
        )
        for i, extra in enumerate(bodies):
            if i:
                await asyncio.sleep(0.3)  # a burst: short messages a moment apart
            body = {
                "instance": doctor.instance,
                "number": doctor.number,
                "push_name": doctor.nome,
                "id": uuid.uuid4().hex[:20].upper(),
                **extra,
            }
            answer = (await http.post("/_sandbox/incoming", json=body)).json()
            self.posted.append(
                {
                    **body,
                    "persona": doctor.persona.name,
                    "webhook_status": answer.get("webhook_status"),
                    "at": time.time(),
                }
            )
