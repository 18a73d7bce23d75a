"""What was said in a conversation, in order: for Chatwoot and for the summary.

Doctor's messages and from-me messages are in ``interacoes`` (recorded when a turn
finishes); Júlia's sends are in ``fila_mensagens`` (``enviada``). The turn being
processed is not recorded yet, so callers pass its messages as ``recent``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from julia.core.app import App

#: A summarizer: the last lines and the reason -> a short summary (the agent's model).
Summarizer = Callable[[Sequence["Line"], str], str]


@dataclass(frozen=True)
class Line:
    """One message: ``entrada`` (the doctor) or ``saida`` (Júlia or a person)."""

    direcao: str
    texto: str
    at: datetime
    provider_message_id: str | None = None
    tipo: str = "texto"


_LINES = """
SELECT direcao, conteudo AS texto, created_at AS at, provider_message_id, tipo
FROM interacoes WHERE conversa_id = %(c)s AND conteudo <> ''
UNION ALL
SELECT 'saida', texto, COALESCE(enviada_em, created_at), provider_message_id, tipo
FROM fila_mensagens WHERE conversa_id = %(c)s AND status = 'enviada'
ORDER BY at DESC LIMIT %(n)s
"""


async def lines(
    app: App, conversa_id: int, *, limit: int, recent: Sequence[Line] = ()
) -> list[Line]:
    """The last ``limit`` messages of a conversation, oldest first, each once."""
    async with app.pool.connection() as conn:
        cur = await conn.execute(_LINES, {"c": conversa_id, "n": limit})
        rows = [Line(**r) for r in await cur.fetchall()]
    seen: set[str] = set()
    out: list[Line] = []
    for line in sorted([*rows, *recent], key=lambda x: x.at):
        if line.provider_message_id:
            if line.provider_message_id in seen:
                continue
            seen.add(line.provider_message_id)
        out.append(line)
    return out[-limit:]


def digest(history: Sequence[Line], reason: str) -> str:
    """The default summary, deterministic: the reason and the last messages of each side
    (until the agent's model provides a real summary)."""
    doctor = [x.texto for x in history if x.direcao == "entrada"][-3:]
    julia = [x.texto for x in history if x.direcao == "saida"][-1:]

    def clip(text: str) -> str:
        text = " ".join(text.split())
        return text if len(text) <= 160 else text[:157] + "..."

    parts = [f"Motivo: {reason}.", f"{len(history)} mensagens na conversa."]
    if doctor:
        parts.append("Últimas do médico: " + " | ".join(f'"{clip(t)}"' for t in doctor))
    if julia:
        parts.append(f'Última da Júlia: "{clip(julia[0])}"')
    return "\n".join(parts)
