"""Text helpers of the agent: folding for matching, Brazilian money and dates."""

from __future__ import annotations

import unicodedata
from datetime import date
from decimal import Decimal
from typing import Any

DIAS = ("segunda", "terça", "quarta", "quinta", "sexta", "sábado", "domingo")


def fold(text: str) -> str:
    """Lower case without accents."""
    nfkd = unicodedata.normalize("NFKD", text.lower())
    return " ".join("".join(c for c in nfkd if not unicodedata.combining(c)).split())


def dia(d: date) -> str:
    return DIAS[d.weekday()]


def vaga_json(v: Any, cidade: str | None = None) -> dict[str, Any]:
    """A shift as tools give it to the model (and as offers keep it)."""
    return {
        "vaga_id": v["id"],
        "hospital": v["hospital"],
        "cidade": cidade if cidade is not None else v.get("cidade"),
        "especialidade": v["especialidade"],
        "data": v["data"].isoformat(),
        "dia": dia(v["data"]),
        "inicio": v["inicio"].strftime("%H:%M"),
        "fim": v["fim"].strftime("%H:%M"),
        "periodo": v["periodo"],
        "valor": str(Decimal(v["valor"]).quantize(Decimal("0.01"))),
    }
