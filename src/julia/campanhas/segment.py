"""Segments: filters over doctors, resolved and screened by the guardrails in one query."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from psycopg import AsyncConnection

from julia.core.app import App
from julia.core.errors import InvalidInput
from julia.guardrails import rules


@dataclass(frozen=True)
class Segmento:
    especialidade: str | None = None
    uf: str | None = None
    cidade: str | None = None
    tags: list[str] = field(default_factory=list)
    sem_contato_dias: float | None = None  # last message sent longer ago than this (or never)
    nunca_contatado: bool = False
    respondeu_antes: bool = False  # wrote to Júlia at least once
    vaga_aberta: bool = False  # an open shift in their specialty (and state, when known)

    def __post_init__(self) -> None:
        if self.uf is not None and (len(self.uf) != 2 or not self.uf.isalpha()):
            raise InvalidInput(f"uf {self.uf!r} is not a two-letter state")
        if self.sem_contato_dias is not None and self.sem_contato_dias < 0:
            raise InvalidInput("--sem-contato-dias must be zero or more")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, data: dict[str, Any]) -> Segmento:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


_RESOLVE = """
SELECT m.id AS k, m.id AS medico_id, m.telefone, %(tipo)s::text AS tipo, NULL::bigint AS msg_id,
       m.id, m.nome, e.nome AS especialidade, m.cidade, m.uf
FROM medicos m LEFT JOIN especialidades e ON e.id = m.especialidade_id
WHERE (%(esp)s::text IS NULL OR lower(e.nome) = lower(%(esp)s))
  AND (%(uf)s::text IS NULL OR m.uf = %(uf)s)
  AND (%(cidade)s::text IS NULL OR lower(m.cidade) = lower(%(cidade)s))
  AND m.tags @> %(tags)s::text[]
  AND (%(sem_since)s::timestamptz IS NULL OR NOT EXISTS (SELECT 1 FROM fila_mensagens f
       WHERE f.medico_id = m.id AND f.enviada_em > %(sem_since)s))
  AND (NOT %(nunca)s OR NOT EXISTS (SELECT 1 FROM fila_mensagens f
       WHERE f.medico_id = m.id AND f.enviada_em IS NOT NULL))
  AND (NOT %(resp)s OR EXISTS (SELECT 1 FROM mensagens_recebidas r
       WHERE r.telefone = m.telefone AND r.kind = 'mensagem' AND NOT r.from_me))
  AND (NOT %(vaga)s OR EXISTS (SELECT 1 FROM vagas v JOIN hospitais h ON h.id = v.hospital_id
       WHERE v.status = 'aberta' AND v.especialidade_id = m.especialidade_id
       AND v.data >= %(today)s AND (m.uf IS NULL OR h.uf IS NULL OR h.uf = m.uf)))
"""


async def resolve(
    app: App, conn: AsyncConnection[Any], seg: Segmento, tipo: str
) -> list[dict[str, Any]]:
    """The doctors the segment names, by id, each with ``regras``: the guardrails that stop
    ``tipo`` to them (so what each rule removes can be counted), in one statement."""
    now = app.clock.now()
    return await rules.screen_source(
        app, conn, _RESOLVE,
        {
            "esp": seg.especialidade, "uf": seg.uf.upper() if seg.uf else None,
            "cidade": seg.cidade, "tags": list(seg.tags),
            "sem_since": None if seg.sem_contato_dias is None
            else now - timedelta(days=seg.sem_contato_dias),
            "nunca": seg.nunca_contatado, "resp": seg.respondeu_antes, "vaga": seg.vaga_aberta,
            "today": now.date(),
        },
        tipo,
    )  # fmt: skip
