"""The processor contract: a name, a priority and one method returning continue or stop.

A turn's state is an immutable :class:`TurnContext`; a processor never mutates it,
it returns a :class:`Step` holding a new one (``ctx.with_(...)``). The pipeline runs
processors in ascending priority and stops at the first ``stop``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Protocol

from julia.core.app import App
from julia.core.logs import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class Message:
    """One inbox row of the turn."""

    id: int
    provider: str
    instance: str | None
    provider_message_id: str
    telefone: str | None
    remote_jid: str | None
    from_me: bool
    is_group: bool
    tipo: str
    texto: str | None
    midia: Mapping[str, Any] | None
    push_name: str | None
    received_at: datetime


@dataclass(frozen=True)
class TurnContext:
    """Everything processors know about a turn; replaced, never changed."""

    conversa_key: str
    mensagens: tuple[Message, ...]
    texto: str = ""
    medico_id: int | None = None
    medico_nome: str | None = None
    medico_novo: bool = False
    opted_out: bool = False
    conversa_id: int | None = None
    controlled_by: str = "julia"
    chip_id: int | None = None
    resposta: str | None = None
    responder_apos: datetime | None = None
    flags: frozenset[str] = frozenset()
    detalhes: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def of(cls, conversa_key: str, mensagens: Iterable[Message]) -> TurnContext:
        return cls(conversa_key=conversa_key, mensagens=tuple(mensagens))

    def with_(self, **changes: Any) -> TurnContext:
        return dataclasses.replace(self, **changes)

    def note(self, **items: Any) -> TurnContext:
        return self.with_(detalhes=MappingProxyType({**self.detalhes, **items}))

    def flag(self, *names: str) -> TurnContext:
        return self.with_(flags=self.flags | frozenset(names))

    @property
    def last(self) -> Message:
        return self.mensagens[-1]

    @property
    def provider(self) -> str:
        return self.last.provider

    @property
    def instance(self) -> str | None:
        return self.last.instance

    @property
    def telefone(self) -> str | None:
        return next((m.telefone for m in reversed(self.mensagens) if m.telefone), None)

    @property
    def from_doctor(self) -> tuple[Message, ...]:
        """The messages the doctor wrote (not those typed on the chip's phone)."""
        return tuple(m for m in self.mensagens if not m.from_me)

    @property
    def is_group(self) -> bool:
        return any(m.is_group for m in self.mensagens)


@dataclass(frozen=True)
class Step:
    """A processor's answer: the new context, and whether the turn stops here."""

    ctx: TurnContext
    stop: bool = False
    reason: str | None = None
    #: Turn status when stopping: ``parado`` or ``agendado`` (reply later).
    status: str = "parado"


def proceed(ctx: TurnContext) -> Step:
    return Step(ctx)


def halt(ctx: TurnContext, reason: str, *, status: str = "parado") -> Step:
    return Step(ctx, stop=True, reason=reason, status=status)


class Processor(Protocol):
    name: str
    priority: int

    async def process(self, app: App, ctx: TurnContext) -> Step: ...


@dataclass(frozen=True)
class PipelineResult:
    ctx: TurnContext
    status: str  # aguardando_resposta | agendado | parado
    parado_por: str | None
    motivo: str | None
    ran: tuple[str, ...]


async def run_pipeline(
    app: App, ctx: TurnContext, processors: Sequence[Processor]
) -> PipelineResult:
    """Run the processors in priority order until one stops; exceptions propagate."""
    ran: list[str] = []
    for processor in sorted(processors, key=lambda p: p.priority):
        step = await processor.process(app, ctx)
        ctx = step.ctx
        ran.append(processor.name)
        if step.stop:
            log.info(
                "inbox.turn_stopped",
                first_message=ctx.mensagens[0].id,
                processor=processor.name,
                reason=step.reason,
            )
            return PipelineResult(ctx, step.status, processor.name, step.reason, tuple(ran))
    status = "agendado" if ctx.responder_apos is not None else "aguardando_resposta"
    return PipelineResult(ctx, status, None, None, tuple(ran))
