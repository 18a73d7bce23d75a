"""A turn's context, its parts read in parallel: history (or summary + the last 5),
the doctor's profile, preferences and memories, this conversation's offers, how many
shifts of their specialty are open, and the active directives (``app_settings`` key
``agent.diretrizes``). A part that fails is logged and left out; the turn goes on.
Two round trips in parallel: the history (with the stored summary), and one query for
everything else."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from julia.agent.text import dia, fold
from julia.core.app import App
from julia.core.logs import get_logger
from julia.llm.model import Model, Request

log = get_logger(__name__)

SUMMARY_SYSTEM = ("Resuma em até 5 linhas, em português, a conversa entre a Júlia (recrutadora)"
                  " e um médico: o que ele procura, o que foi oferecido e combinado.")  # fmt: skip


@dataclass
class Context:
    history: list[dict[str, Any]] = field(default_factory=list)
    resumo: str | None = None
    medico: dict[str, Any] = field(default_factory=dict)
    memorias: list[str] = field(default_factory=list)
    ofertas: list[dict[str, Any]] = field(default_factory=list)
    vagas_abertas: int | None = None
    diretrizes: list[str] = field(default_factory=list)
    hospitais: set[str] = field(default_factory=set)
    failed: list[str] = field(default_factory=list)

    def as_json(self, today: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"hoje": f"{dia(today)} {today.isoformat()}", "medico": self.medico}
        if self.resumo:
            out["resumo_da_conversa"] = self.resumo
        if self.memorias:
            out["memorias"] = self.memorias
        if self.ofertas:
            out["ofertas"] = self.ofertas
        if self.vagas_abertas is not None:
            out["vagas_abertas_na_especialidade"] = self.vagas_abertas
        if self.diretrizes:
            out["diretrizes"] = self.diretrizes
        return out


async def _rows(app: App, sql: str, *params: Any) -> list[dict[str, Any]]:
    async with app.pool.connection() as conn:
        cur = await conn.execute(sql, params)
        return list(await cur.fetchall())


async def _history(
    app: App, model: Model, conversa_id: int, exclude: list[str]
) -> tuple[list[dict[str, Any]], str | None]:
    s = app.settings
    # The stored summary comes along with the messages (same round trip).
    rows = await _rows(app, _HISTORY, conversa_id, exclude,
                       max(s.agent_history_messages, s.agent_summary_after + 1))  # fmt: skip
    rows.reverse()
    stored = rows[-1] if rows else {}
    rows = [{k: r[k] for k in ("direcao", "conteudo", "created_at")} for r in rows]
    if len(rows) <= s.agent_summary_after:
        return rows, None
    resumo = await _summary(app, model, conversa_id, rows[:-5], stored)
    return rows[-5:], resumo


_HISTORY = """
SELECT i.direcao, i.conteudo, i.created_at, c.resumo, c.resumo_ate
FROM interacoes i JOIN conversas c ON c.id = i.conversa_id
WHERE i.conversa_id = %s AND (i.provider_message_id IS NULL OR i.provider_message_id <> ALL(%s))
ORDER BY i.created_at DESC, i.id DESC LIMIT %s
"""


async def _summary(
    app: App,
    model: Model,
    conversa_id: int,
    older: list[dict[str, Any]],
    stored: dict[str, Any],
) -> str | None:
    """The stored summary, refreshed by the cheaper model when older messages changed."""
    last = older[-1]["created_at"] if older else None
    if stored.get("resumo") and stored.get("resumo_ate") == last:
        return str(stored["resumo"])
    lines = [
        f"{'Médico' if r['direcao'] == 'entrada' else 'Júlia'}: {r['conteudo']}" for r in older
    ]
    response = await model.create(
        Request(system=SUMMARY_SYSTEM, messages=[{"role": "user", "content": "\n".join(lines)}],
                model=app.settings.llm_summary_model, max_tokens=300)
    )  # fmt: skip
    async with app.pool.connection() as conn:
        await conn.execute(
            "UPDATE conversas SET resumo = %s, resumo_ate = %s WHERE id = %s",
            (response.text, last, conversa_id),
        )
    return response.text


_PROFILE = """
SELECT
  (SELECT to_jsonb(p) FROM (SELECT m.nome, e.nome AS especialidade, m.especialidade_id, m.cidade,
          m.uf, m.preferencias FROM medicos m LEFT JOIN especialidades e
          ON e.id = m.especialidade_id WHERE m.id = %(m)s) p) AS medico,
  (SELECT COALESCE(jsonb_agg(texto), '[]') FROM (SELECT texto FROM agent_memorias
          WHERE medico_id = %(m)s ORDER BY id DESC LIMIT 10) t) AS memorias,
  (SELECT COALESCE(jsonb_agg(o.snapshot || jsonb_build_object('status', v.status) ORDER BY o.id),
          '[]') FROM agent_ofertas o JOIN vagas v ON v.id = o.vaga_id
          WHERE o.conversa_id = %(c)s) AS ofertas,
  (SELECT count(*) FROM vagas v JOIN medicos m ON m.especialidade_id = v.especialidade_id
          WHERE m.id = %(m)s AND v.status = 'aberta' AND v.data >= %(hoje)s) AS vagas,
  (SELECT value FROM app_settings WHERE key = 'agent.diretrizes') AS diretrizes,
  (SELECT COALESCE(jsonb_agg(nome), '[]') FROM hospitais) AS hospitais
"""


async def _profile(app: App, conversa_id: int, medico_id: int) -> dict[str, Any]:
    rows = await _rows_named(
        app, _PROFILE, {"m": medico_id, "c": conversa_id, "hoje": app.clock.now().date()}
    )
    return rows[0]


async def _rows_named(app: App, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    async with app.pool.connection() as conn:
        cur = await conn.execute(sql, params)
        return list(await cur.fetchall())


async def build(
    app: App, model: Model, *, conversa_id: int, medico_id: int, exclude: list[str]
) -> Context:
    """The two parts (history; profile, memories, offers, directives) read in parallel."""
    ctx = Context()
    parts: dict[str, Awaitable[Any]] = {
        "history": _history(app, model, conversa_id, exclude),
        "perfil": _profile(app, conversa_id, medico_id),
    }
    results = await asyncio.gather(*parts.values(), return_exceptions=True)
    for name, result in zip(parts, results, strict=True):
        if isinstance(result, BaseException):
            if not isinstance(result, Exception):
                raise result
            log.warning("agent.context_part_failed", part=name, error=type(result).__name__)
            ctx.failed.append(name)
        elif name == "history":
            ctx.history, ctx.resumo = result
        else:
            p = result
            ctx.medico = {k: v for k, v in (p["medico"] or {}).items() if v not in (None, {}, "")}
            ctx.memorias = list(p["memorias"])
            ctx.ofertas = list(p["ofertas"])
            ctx.vagas_abertas = int(p["vagas"])
            value = p["diretrizes"]
            if value is not None:
                ctx.diretrizes = [str(v) for v in (value if isinstance(value, list) else [value])]
            ctx.hospitais = {fold(n) for n in p["hospitais"]}
    return ctx
