"""One turn answered: context, the tool loop, validation, the reply queued once.

    outcome = await answer(app, TurnInput(...))

Bounds: at most ``agent_max_iterations`` model calls (the last one may not call
tools), ``agent_tool_timeout_s`` per tool, ``agent_turn_deadline_s`` for everything.
A timeout, a model failure, an open breaker or a spent budget gives the fallback
reply, marks the conversation for review, and counts; ``agent_fallbacks_handoff``
fallbacks in a row hand the conversation to a person.

Delivery is one transaction on the conversation row: the watermark moves forward
(compare-and-set: a turn already answered is not answered again), control is checked
again (a person who took over mid-turn gets silence), and a newer message from the
doctor that arrived mid-turn drops this reply (:class:`Superseded`: the inbox redoes
the turn with it) unless a tool already acted. The reply's parts are queued as
``resposta`` with keys ``agent:<first message id>:<n>``, a short pause between them.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb

from julia.agent import context as context_mod
from julia.agent import handoff_port, prompt, validate
from julia.agent import tools as _tools  # noqa: F401  (registers the tools)
from julia.agent.registry import REGISTRY, ToolResult
from julia.agent.state import ToolContext
from julia.core import metrics
from julia.core.app import App
from julia.core.logs import get_logger
from julia.fila.queue import NewMessage, enqueue_many
from julia.llm import client as llm_client
from julia.llm.model import Model, ModelError, Request, Response, Usage, anthropic_model
from julia.notify import alerts

log = get_logger(__name__)

FALLBACK = "Desculpa, tive um probleminha aqui. Pode repetir?"
HANDOFF_AFTER_FALLBACKS = "Vou pedir pra alguém da equipe continuar com você, tá? Só um instante."
OPTOUT_CONFIRMATION = (
    "Tudo bem, não vou mais te mandar mensagens. Se mudar de ideia, é só chamar. 👋"
)


class Superseded(Exception):
    """A newer message from the doctor arrived mid-turn: the reply was dropped, redo it."""


@dataclass(frozen=True)
class TurnInput:
    conversa_id: int
    medico_id: int
    conversa_key: str
    mensagem_ids: tuple[int, ...]
    texto: str
    #: The turn's provider message ids (left out of the history: they are the turn).
    provider_ids: tuple[str, ...] = ()

    @property
    def first_id(self) -> int:
        return min(self.mensagem_ids)

    @property
    def last_id(self) -> int:
        return max(self.mensagem_ids)


@dataclass
class Outcome:
    status: str  # respondido | fallback | humano | repetido | sem_modelo
    resposta: str | None = None
    partes: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    guardrails: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    motivo: str | None = None
    #: The opt-out confirmation: the queue blocks an opted-out doctor, so the caller
    #: sends it straight through the chip (as the inbox's opt-out processor does).
    direct: str | None = None
    fila_ids: list[int] = field(default_factory=list)
    #: Time spent outside the model (context, tools, validation, queueing), seconds.
    overhead_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {"status": self.status, "tools": [c["name"] for c in self.tool_calls],
                "guardrails": self.guardrails, "motivo": self.motivo,
                "usage": self.usage.as_dict(), "partes": len(self.partes)}  # fmt: skip


def ready(app: App) -> bool:
    """A model can be called (configured, or one registered for tests/benchmarks)."""
    return "llm_model" in app.extensions or llm_client.configured(app.settings)


async def no_model_alert(app: App) -> None:
    """Once per process: turns wait, and an operator is told why."""
    if app.extensions.get("agent_no_model_alerted"):
        return
    app.extensions["agent_no_model_alerted"] = True
    await alerts.raise_alert(
        app, "agent.no_model",
        "doctors' turns are waiting: " + llm_client.why_not(app.settings),
    )  # fmt: skip


async def answer(
    app: App, inp: TurnInput, *, model: Model | None = None, queue_reply: bool = True
) -> Outcome:
    """Answer one turn (see the module docstring). Raises :class:`Superseded`.

    ``queue_reply=False`` (``julia chat``, ``julia eval``): everything but the queueing."""
    if not ready(app):
        await no_model_alert(app)
        return Outcome("sem_modelo", motivo=llm_client.why_not(app.settings))
    model = model or anthropic_model(app)
    s = app.settings
    started = time.perf_counter()
    loop = _Loop(app, model, inp)
    try:
        async with asyncio.timeout(s.agent_turn_deadline_s):
            reply = await loop.run()
    except TimeoutError:
        reply, loop.fallback = None, "timeout"
    except ModelError as exc:
        reply, loop.fallback = None, exc.kind
    tc = loop.tc
    outcome = Outcome("respondido", tool_calls=loop.calls, usage=loop.usage)
    if tc is not None and tc.opted_out:
        outcome.direct, reply = OPTOUT_CONFIRMATION, None
        outcome.motivo = "optout"
    elif reply is None or not reply.strip():
        loop.fallback = loop.fallback or "empty"
    if loop.fallback is not None and outcome.direct is None:
        outcome.status, outcome.motivo = "fallback", loop.fallback
        metrics.AGENT_FALLBACKS.labels(loop.fallback).inc()
        log.warning("agent.fallback", reason=loop.fallback, conversa_id=inp.conversa_id)
        reply = FALLBACK
        if await _fallbacks_in_a_row(app, inp.conversa_id) + 1 >= s.agent_fallbacks_handoff:
            await handoff_port.request_handoff(
                app, conversa_id=inp.conversa_id, medico_id=inp.medico_id,
                reason=f"{s.agent_fallbacks_handoff} falhas seguidas", trigger="fallbacks",
                summarize=False,
            )  # fmt: skip
            reply = HANDOFF_AFTER_FALLBACKS
            if tc is not None:
                tc.handed_off = True
            else:
                loop.handed_off = True
    elif reply is not None:
        verdict = validate.check(reply, loop.facts(), known_hospitals=loop.hospitais)
        for kind in verdict.violations:
            metrics.GUARDRAIL_VIOLATIONS.labels(kind).inc()
            log.warning("agent.guardrail", kind=kind, conversa_id=inp.conversa_id)
        outcome.guardrails = list(verdict.violations)
        reply = verdict.reply
    if reply is not None:
        outcome.partes = validate.split(reply, chars=s.agent_message_chars,
                                        most=s.agent_max_messages)  # fmt: skip
    outcome.resposta = "\n\n".join(outcome.partes) if outcome.partes else outcome.direct
    handed = loop.handed_off or (tc is not None and tc.handed_off)
    acted = bool(tc and tc.side_effects)
    await _deliver(app, inp, outcome, handed_off=handed, acted=acted, queue_reply=queue_reply,
                   started=started)  # fmt: skip
    outcome.overhead_s = max(time.perf_counter() - started - loop.timed.seconds, 0.0)
    log.info("agent.turn", conversa_id=inp.conversa_id, **outcome.summary())
    return outcome


class _Timed:
    """The model, its time kept apart (what the turn adds around it is the rest)."""

    def __init__(self, model: Model) -> None:
        self.model, self.seconds = model, 0.0

    async def create(self, request: Request) -> Response:
        t0 = time.perf_counter()
        try:
            return await self.model.create(request)
        finally:
            self.seconds += time.perf_counter() - t0


class _Loop:
    def __init__(self, app: App, model: Model, inp: TurnInput) -> None:
        self.app, self.inp = app, inp
        self.model = self.timed = _Timed(model)
        self.tc: ToolContext | None = None
        self.calls: list[dict[str, Any]] = []
        self.usage = Usage()
        self.fallback: str | None = None
        self.handed_off = False
        self.hospitais: set[str] = set()

    def facts(self) -> Any:
        assert self.tc is not None
        return self.tc.facts

    async def run(self) -> str | None:
        app, inp, s = self.app, self.inp, self.app.settings
        ctx = await context_mod.build(
            app, self.model, conversa_id=inp.conversa_id, medico_id=inp.medico_id,
            exclude=list(inp.provider_ids),
        )  # fmt: skip
        self.hospitais = ctx.hospitais
        especialidade_id = ctx.medico.pop("especialidade_id", None)
        self.tc = tc = ToolContext(app, inp.conversa_id, inp.medico_id, especialidade_id,
                                   inp.first_id)  # fmt: skip
        for oferta in ctx.ofertas:
            tc.facts.add_vaga(oferta)
        turn = prompt.turn_message(inp.texto, ctx.as_json(app.clock.now().date()))
        messages = prompt.join(prompt.history_messages(ctx.history), turn)
        schemas = REGISTRY.schemas()
        deadline = time.monotonic() + s.agent_turn_deadline_s
        for i in range(s.agent_max_iterations):
            last = i == s.agent_max_iterations - 1
            request = Request(
                system=prompt.SYSTEM, tools=schemas, messages=messages,
                tool_choice={"type": "none"} if last else None,
                timeout_s=max(deadline - time.monotonic(), 1.0),
            )  # fmt: skip
            response = await self.model.create(request)
            self.usage = self.usage + response.usage
            uses = response.tool_uses
            if not uses or last:
                return response.text
            results = [await REGISTRY.run(tc, use, s.agent_tool_timeout_s) for use in uses]
            self.calls += [_call(use, r) for use, r in zip(uses, results, strict=True)]
            # The pair goes in together: a tool_use is never left without its result.
            messages = [*messages, {"role": "assistant", "content": response.content},
                        {"role": "user", "content": [r.block() for r in results]}]  # fmt: skip
        return None


def _call(use: dict[str, Any], result: ToolResult) -> dict[str, Any]:
    return {"name": result.name, "input": use.get("input"), "is_error": result.is_error,
            "result": result.content}  # fmt: skip


async def _fallbacks_in_a_row(app: App, conversa_id: int) -> int:
    n = app.settings.agent_fallbacks_handoff
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT status FROM agent_turnos WHERE conversa_id = %s AND status IN"
            " ('respondido', 'fallback') ORDER BY id DESC LIMIT %s",
            (conversa_id, n),
        )
        rows = [r["status"] for r in await cur.fetchall()]
    count = 0
    for status in rows:
        if status != "fallback":
            break
        count += 1
    return count


# One statement: the watermark's compare-and-set, who controls the conversation, and
# whether a newer message from the doctor is waiting (the reply then gives way to it).
_CAS = """
UPDATE conversas SET agent_watermark = %(last)s,
    revisar = revisar OR %(revisar)s, updated_at = %(now)s
WHERE id = %(c)s AND agent_watermark < %(last)s
RETURNING controlled_by, EXISTS (
    SELECT 1 FROM mensagens_recebidas
    WHERE conversa_key = %(k)s AND status = 'pendente' AND kind = 'mensagem' AND NOT from_me
      AND id > %(last)s
) AS newer
"""


async def _deliver(
    app: App,
    inp: TurnInput,
    outcome: Outcome,
    *,
    handed_off: bool,
    acted: bool,
    queue_reply: bool,
    started: float,
) -> None:
    now = app.clock.now()
    revisar = outcome.status == "fallback" or bool(outcome.guardrails)
    async with app.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            _CAS, {"last": inp.last_id, "revisar": revisar, "now": now, "c": inp.conversa_id,
                   "k": inp.conversa_key},
        )  # fmt: skip
        row = await cur.fetchone()
        if row is None:
            outcome.status, outcome.motivo = "repetido", "turn already answered"
            outcome.partes = []
        elif row["controlled_by"] == "humano" and not handed_off:
            outcome.status, outcome.motivo = "humano", "a person took over mid-turn"
            outcome.partes, outcome.direct = [], None
        if row is None or outcome.status == "humano":
            await _record(conn, app, inp, outcome, started)
            return
        if row["newer"] and not acted:
            log.info("agent.superseded", conversa_id=inp.conversa_id)
            raise Superseded()  # rolls the watermark back with the transaction
        if queue_reply and outcome.partes:
            await _queue(app, conn, inp, outcome, now)
        texts = outcome.partes or ([outcome.direct] if outcome.direct else [])
        await _record(conn, app, inp, outcome, started, saida=texts, saida_at=now)


async def _queue(app: App, conn: Any, inp: TurnInput, outcome: Outcome, now: datetime) -> None:
    """The reply's parts in one insert, a short pause between them."""
    delay = app.settings.agent_message_delay_s
    keys = [f"agent:{inp.first_id}:{n}" for n in range(len(outcome.partes))]
    queued = await enqueue_many(
        app,
        [NewMessage(texto=part, tipo="resposta", medico_id=inp.medico_id,
                    conversa_id=inp.conversa_id, idempotency_key=key,
                    agendar_para=now + timedelta(seconds=delay * n))
         for n, (part, key) in enumerate(zip(outcome.partes, keys, strict=True))],
        conn=conn,
    )  # fmt: skip
    if queued.duplicates == 0:
        outcome.fila_ids.extend(queued.ids)
        return
    # A part already queued under its key: name the message that holds it, in part order.
    cur = await conn.execute(
        "SELECT id FROM fila_mensagens WHERE idempotency_key = ANY(%s)"
        " ORDER BY array_position(%s, idempotency_key)",
        (keys, keys),
    )
    outcome.fila_ids.extend(r["id"] for r in await cur.fetchall())


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


# The turn's record and the reply's interactions (``saida``, maybe none) in one statement.
_RECORD = """
WITH saida AS (
    INSERT INTO interacoes (conversa_id, medico_id, direcao, tipo, conteudo, created_at)
    SELECT %(c)s, %(m)s, 'saida', 'texto', t, %(saida_at)s::timestamptz
    FROM unnest(%(saida)s::text[]) AS t
)
INSERT INTO agent_turnos (conversa_id, medico_id, mensagens, status, texto, resposta,
    tool_calls, guardrails, usage, motivo, duracao_ms, created_at)
VALUES (%(c)s, %(m)s, %(mensagens)s, %(status)s, %(texto)s, %(resposta)s, %(tool_calls)s,
    %(guardrails)s, %(usage)s, %(motivo)s, %(ms)s, %(now)s)
"""


async def _record(
    conn: Any,
    app: App,
    inp: TurnInput,
    outcome: Outcome,
    started: float,
    *,
    saida: list[str] | None = None,
    saida_at: datetime | None = None,
) -> None:
    ms = int((time.perf_counter() - started) * 1000)
    now = app.clock.now()
    await conn.execute(
        _RECORD,
        {"c": inp.conversa_id, "m": inp.medico_id, "mensagens": list(inp.mensagem_ids),
         "status": outcome.status, "texto": inp.texto, "resposta": outcome.resposta,
         "tool_calls": Jsonb(outcome.tool_calls, dumps=_dumps),
         "guardrails": Jsonb(outcome.guardrails), "usage": Jsonb(outcome.usage.as_dict()),
         "motivo": outcome.motivo, "ms": ms, "now": now, "saida": saida or [],
         "saida_at": saida_at or now},
    )  # fmt: skip
