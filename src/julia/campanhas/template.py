"""Campaign templates: ``{nome}``-style placeholders, validated before anything is written.

A placeholder that is unknown, or that a recipient lacks (a doctor with no city for
``{cidade}``), is an error at creation, preview and send, never a blank in a message.
Rendering substitutes text only (no ``str.format``): a doctor's name is data.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from julia.core.errors import InvalidInput
from julia.domain import medicos

DOCTOR = {"nome": "the doctor's first name", "nome_completo": "the doctor's full name",
          "especialidade": "the doctor's specialty", "cidade": "the doctor's city",
          "uf": "the doctor's state"}  # fmt: skip
SHIFT = {"hospital": "the shift's hospital", "data": "the shift's date (dd/mm)",
         "periodo": "the shift's period", "valor": "the shift's value (R$)"}  # fmt: skip
PLACEHOLDERS = DOCTOR | SHIFT
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def placeholders(texto: str) -> list[str]:
    """The placeholders a template uses, in order, each once; unknown ones are an error."""
    if not (texto or "").strip():
        raise InvalidInput("the campaign needs a message (--texto)")
    found = list(dict.fromkeys(m.group(1).strip() for m in _PLACEHOLDER.finditer(texto)))
    unknown = [p for p in found if p not in PLACEHOLDERS]
    if unknown:
        raise InvalidInput(
            f"unknown placeholder {{{unknown[0]}}} in the message; known: "
            + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS)
        )
    return found


def shift_values(vaga: Mapping[str, Any]) -> dict[str, str]:
    d = vaga["data"]
    valor = Decimal(vaga["valor"])
    reais = f"{valor:,.2f}".replace(",", "X").replace(".", ",").replace("X", ".")
    return {
        "hospital": str(vaga["hospital"]),
        "data": d.strftime("%d/%m") if isinstance(d, date) else str(d),
        "periodo": str(vaga["periodo"]),
        "valor": f"R$ {reais}",
    }


def doctor_values(m: Mapping[str, Any]) -> dict[str, str | None]:
    nome = (m.get("nome") or "").strip()
    return {
        "nome": medicos.first_name(nome),
        "nome_completo": nome or None,
        "especialidade": m.get("especialidade") or None,
        "cidade": m.get("cidade") or None,
        "uf": m.get("uf") or None,
    }


def missing(used: Iterable[str], values: Mapping[str, str | None]) -> list[str]:
    return [p for p in used if not values.get(p)]


def renderer(texto: str) -> Callable[[Mapping[str, str | None]], str]:
    """:func:`render` for one template, split once (a campaign renders it per recipient)."""
    parts = _PLACEHOLDER.split(texto)  # literal, name, literal, ..., literal
    names = [p.strip() for p in parts[1::2]]
    literals = parts[0::2]

    def render_one(values: Mapping[str, str | None]) -> str:
        out = [literals[0]]
        for name, literal in zip(names, literals[1:], strict=True):
            value = values.get(name)
            if not value:
                raise InvalidInput(f"no value for {{{name}}}")
            out += (value, literal)
        return "".join(out)

    return render_one


def render(texto: str, values: Mapping[str, str | None]) -> str:
    """The message for one recipient; every value must be present (see :func:`missing`)."""

    def sub(m: re.Match[str]) -> str:
        value = values.get(m.group(1).strip())
        if not value:
            raise InvalidInput(f"no value for {{{m.group(1).strip()}}}")
        return value

    return _PLACEHOLDER.sub(sub, texto)
