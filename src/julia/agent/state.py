"""What a tool may know and change during one turn: the bound doctor and conversation
(never from the model's input), the offers, and the facts tools returned (for the
reply's validation)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from julia.agent.text import fold
from julia.core.app import App


@dataclass
class Facts:
    """Shifts, values, dates and hospitals this turn's tools or this conversation's offers
    returned: the only ones the reply may mention."""

    valores: set[Decimal] = field(default_factory=set)
    datas: set[str] = field(default_factory=set)  # "dd/mm"
    hospitais: set[str] = field(default_factory=set)  # folded names

    def add_vaga(self, v: dict[str, Any]) -> None:
        self.valores.add(Decimal(str(v["valor"])).quantize(Decimal("0.01")))
        iso = str(v["data"])
        self.datas.add(f"{iso[8:10]}/{iso[5:7]}")
        self.hospitais.add(fold(str(v["hospital"])))


@dataclass
class ToolContext:
    app: App
    conversa_id: int
    medico_id: int
    especialidade_id: int | None
    #: The turn's first inbound message id: keys the idempotency of its side effects.
    turn_key: int
    facts: Facts = field(default_factory=Facts)
    handed_off: bool = False
    opted_out: bool = False
    side_effects: list[str] = field(default_factory=list)
