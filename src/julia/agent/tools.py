"""The agent's tools. The doctor and conversation come from :class:`ToolContext`
(bound by the loop), never from the model's input; a reservation acts only on a
shift offered in this conversation."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field

from julia.agent import handoff_port
from julia.agent.registry import ToolFailure, tool
from julia.agent.state import ToolContext
from julia.agent.text import fold, vaga_json
from julia.core.errors import NotFound
from julia.domain import vagas
from julia.fila.queue import NewMessage, enqueue

PERIODOS = {"noite": ("noite", "noturno"), "noturno": ("noite", "noturno"),
            "manha": ("manha", "diurno"), "tarde": ("tarde", "diurno"),
            "diurno": ("diurno", "manha", "tarde"), "integral": ("integral",)}  # fmt: skip
FOLLOWUP_TEXT = "Oi! Passando pra saber se agora você tem um tempinho pra ver uns plantões 🙂"

_SEARCH = """
SELECT v.id, h.nome AS hospital, h.cidade, e.nome AS especialidade, v.data, v.inicio, v.fim,
       v.periodo, v.valor, v.updated_at
FROM vagas v JOIN hospitais h ON h.id = v.hospital_id
JOIN especialidades e ON e.id = v.especialidade_id
WHERE v.status = 'aberta' AND v.data >= %(hoje)s
  AND (%(esp)s::text IS NULL OR translate(lower(e.nome), 'áàâãéêíóôõúç', 'aaaaeeiooouc') = %(esp)s)
  AND (%(esp)s::text IS NOT NULL OR %(esp_id)s::bigint IS NULL OR v.especialidade_id = %(esp_id)s)
  AND (%(data)s::date IS NULL OR v.data = %(data)s)
  AND (%(dow)s::int IS NULL OR EXTRACT(ISODOW FROM v.data) = %(dow)s)
  AND (%(periodos)s::text[] IS NULL OR v.periodo = ANY(%(periodos)s))
  AND (%(cidade)s::text IS NULL OR lower(h.cidade) = lower(%(cidade)s))
  AND (%(valor_min)s::numeric IS NULL OR v.valor >= %(valor_min)s)
  AND v.id <> ALL(%(excluir)s)
ORDER BY v.data, v.inicio, v.id
LIMIT %(n)s
"""


class BuscarVagas(BaseModel):
    especialidade: str | None = Field(
        default=None, description="Especialidade (padrão: a do médico)."
    )
    data: date | None = Field(default=None, description="Data exata (AAAA-MM-DD).")
    dia_semana: int | None = Field(
        default=None, ge=0, le=6, description="0=segunda ... 5=sábado, 6=domingo."
    )
    periodo: str | None = Field(
        default=None, description="manha, tarde, noite, diurno, noturno, integral."
    )
    cidade: str | None = Field(default=None, description="Cidade do hospital.")
    valor_minimo: float | None = Field(default=None, ge=0, description="Valor mínimo em reais.")


class VagaRef(BaseModel):
    vaga_id: int = Field(description="O vaga_id de uma vaga já oferecida nesta conversa.")


class Preferencias(BaseModel):
    observacao: str | None = Field(default=None, max_length=300)
    periodos: list[str] | None = None
    cidades: list[str] | None = None
    valor_minimo: float | None = Field(default=None, ge=0)


class Memoria(BaseModel):
    texto: str = Field(min_length=1, max_length=500, description="Fato útil sobre o médico.")


class Motivo(BaseModel):
    motivo: str = Field(default="", max_length=300)


class Followup(BaseModel):
    dias: int = Field(ge=1, le=60, description="Daqui a quantos dias falar de novo.")
    motivo: str = Field(default="", max_length=300)


async def search(
    tc: ToolContext, args: BuscarVagas, *, excluir: list[int] | None = None
) -> list[dict[str, Any]]:
    """Open shifts that fit, at most ``agent_buscar_limit``; each recorded as an offer."""
    app = tc.app
    hoje = app.clock.now().date()
    periodos = (
        list(PERIODOS.get(fold(args.periodo), (fold(args.periodo),))) if args.periodo else None
    )
    params = {
        "hoje": hoje, "esp": fold(args.especialidade) if args.especialidade else None,
        "esp_id": tc.especialidade_id, "data": args.data,
        "dow": args.dia_semana + 1 if args.dia_semana is not None else None,
        "periodos": periodos, "cidade": args.cidade, "valor_min": args.valor_minimo,
        "excluir": excluir or [], "n": app.settings.agent_buscar_limit,
    }  # fmt: skip
    async with app.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(_SEARCH, params)
        rows = list(await cur.fetchall())
        found = [vaga_json(r) for r in rows]
        await _offer(tc, conn, rows, found)
    return found


async def _offer(tc: ToolContext, conn: Any, rows: list[Any], found: list[dict[str, Any]]) -> None:
    if not rows:
        return
    await conn.execute(
        "INSERT INTO agent_ofertas (conversa_id, medico_id, vaga_id, vaga_updated_at, snapshot,"
        " created_at) SELECT %s, %s, u.v, u.t, u.s, %s"
        " FROM unnest(%s::bigint[], %s::timestamptz[], %s::jsonb[]) AS u(v, t, s)"
        " ON CONFLICT (conversa_id, vaga_id) DO UPDATE"
        " SET vaga_updated_at = EXCLUDED.vaga_updated_at,"
        " snapshot = EXCLUDED.snapshot, created_at = EXCLUDED.created_at",
        (tc.conversa_id, tc.medico_id, tc.app.clock.now(), [r["id"] for r in rows],
         [r["updated_at"] for r in rows], [Jsonb(f) for f in found]),
    )  # fmt: skip
    for f in found:
        tc.facts.add_vaga(f)


@tool("buscar_vagas", "Busca vagas de plantão abertas que combinam com o pedido (no máximo 5)."
      " Use sempre antes de falar de qualquer vaga, valor ou data.", BuscarVagas,
      side_effect=False)  # fmt: skip
async def buscar_vagas(tc: ToolContext, args: BuscarVagas) -> dict[str, Any]:
    return {"vagas": await search(tc, args)}


async def _offered(tc: ToolContext, vaga_id: int) -> dict[str, Any]:
    async with tc.app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT vaga_updated_at, snapshot FROM agent_ofertas"
            " WHERE conversa_id = %s AND vaga_id = %s",
            (tc.conversa_id, vaga_id),
        )
        row = await cur.fetchone()
    if row is None:
        raise ToolFailure("esta vaga não foi oferecida nesta conversa; use buscar_vagas")
    return dict(row)


@tool("detalhar_vaga", "Detalhes de uma vaga já oferecida nesta conversa.", VagaRef,
      side_effect=False)  # fmt: skip
async def detalhar_vaga(tc: ToolContext, args: VagaRef) -> dict[str, Any]:
    offer = await _offered(tc, args.vaga_id)
    try:
        v = await vagas.get_vaga(tc.app, args.vaga_id)
    except NotFound:
        raise ToolFailure("vaga não encontrada") from None
    snapshot = dict(offer["snapshot"])
    tc.facts.add_vaga(snapshot)
    return {"vaga": snapshot, "status": v.status}


@tool("reservar_vaga", "Reserva para o médico uma vaga já oferecida nesta conversa, quando ele"
      " aceitar.", VagaRef, side_effect=True)  # fmt: skip
async def reservar_vaga(tc: ToolContext, args: VagaRef) -> dict[str, Any]:
    offer = await _offered(tc, args.vaga_id)
    try:
        await vagas.move(
            tc.app, args.vaga_id, "reservar", medico_id=tc.medico_id,
            unchanged_since=offer["vaga_updated_at"], motivo="aceitou pelo WhatsApp",
        )  # fmt: skip
    except vagas.VagaGone:
        snapshot = dict(offer["snapshot"])
        alternativas = await search(
            tc, BuscarVagas(especialidade=snapshot.get("especialidade")), excluir=[args.vaga_id]
        )
        raise ToolFailure("a vaga não está mais disponível", alternativas=alternativas) from None
    tc.side_effects.append(f"reservar_vaga:{args.vaga_id}")
    snapshot = dict(offer["snapshot"])
    tc.facts.add_vaga(snapshot)
    return {"reservada": True, "vaga": snapshot}


@tool("registrar_preferencias", "Guarda preferências do médico (períodos, cidades, valor"
      " mínimo, observações).", Preferencias, side_effect=True)  # fmt: skip
async def registrar_preferencias(tc: ToolContext, args: Preferencias) -> dict[str, Any]:
    prefs = args.model_dump(exclude_none=True)
    async with tc.app.pool.connection() as conn:
        await conn.execute(
            "UPDATE medicos SET preferencias = preferencias || %s, updated_at = %s WHERE id = %s",
            (Jsonb(prefs), tc.app.clock.now(), tc.medico_id),
        )
    tc.side_effects.append("registrar_preferencias")
    return {"salvo": True}


@tool("salvar_memoria", "Guarda um fato útil sobre o médico para as próximas conversas.",
      Memoria, side_effect=True)  # fmt: skip
async def salvar_memoria(tc: ToolContext, args: Memoria) -> dict[str, Any]:
    async with tc.app.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO agent_memorias (medico_id, texto, created_at) VALUES (%s, %s, %s)",
            (tc.medico_id, args.texto, tc.app.clock.now()),
        )
    tc.side_effects.append("salvar_memoria")
    return {"salvo": True}


@tool("solicitar_handoff", "Passa a conversa para uma pessoa da equipe (o médico pediu, ou"
      " você não consegue ajudar).", Motivo, side_effect=True)  # fmt: skip
async def solicitar_handoff(tc: ToolContext, args: Motivo) -> dict[str, Any]:
    await handoff_port.request_handoff(
        tc.app, conversa_id=tc.conversa_id, medico_id=tc.medico_id,
        reason=args.motivo or "pedido pelo agente", trigger="agent.tool",
    )  # fmt: skip
    tc.handed_off = True
    tc.side_effects.append("solicitar_handoff")
    return {"ok": True}


@tool("registrar_optout", "O médico não quer mais receber mensagens.", Motivo, side_effect=True)
async def registrar_optout(tc: ToolContext, args: Motivo) -> dict[str, Any]:
    await handoff_port.record_optout(
        tc.app, medico_id=tc.medico_id, reason=args.motivo or "pediu pelo WhatsApp"
    )
    tc.opted_out = True
    tc.side_effects.append("registrar_optout")
    return {"ok": True}


@tool("agendar_followup", "Agenda uma nova mensagem para daqui a alguns dias.", Followup,
      side_effect=True)  # fmt: skip
async def agendar_followup(tc: ToolContext, args: Followup) -> dict[str, Any]:
    when = tc.app.clock.now() + timedelta(days=args.dias)
    queued = await enqueue(
        tc.app,
        NewMessage(texto=FOLLOWUP_TEXT, tipo="followup", medico_id=tc.medico_id,
                   conversa_id=tc.conversa_id, agendar_para=when,
                   idempotency_key=f"agent:{tc.turn_key}:followup"),
    )  # fmt: skip
    tc.side_effects.append("agendar_followup")
    return {"agendado_para": when.date().isoformat(), "novo": queued.created}
