"""A campaign's status, as a table of allowed transitions (each recorded with who and why).

rascunho ──► agendada ──► enviando ◄──► pausada
    │            │           │            │
    └────────────┴───────────┴──► cancelada (from any but concluida)
                             └──► concluida
"""

from __future__ import annotations

from enum import StrEnum

from julia.core.errors import InvalidTransition


class Status(StrEnum):
    RASCUNHO = "rascunho"
    AGENDADA = "agendada"
    ENVIANDO = "enviando"
    PAUSADA = "pausada"
    CONCLUIDA = "concluida"
    CANCELADA = "cancelada"


S = Status
TRANSITIONS: dict[Status, frozenset[Status]] = {
    S.RASCUNHO: frozenset({S.AGENDADA, S.ENVIANDO, S.CANCELADA}),
    S.AGENDADA: frozenset({S.RASCUNHO, S.ENVIANDO, S.CANCELADA}),
    S.ENVIANDO: frozenset({S.PAUSADA, S.CONCLUIDA, S.CANCELADA}),
    S.PAUSADA: frozenset({S.ENVIANDO, S.CANCELADA}),
    S.CONCLUIDA: frozenset(),
    S.CANCELADA: frozenset(),
}


def check(src: Status | str, dst: Status | str) -> None:
    if Status(dst) not in TRANSITIONS[Status(src)]:
        raise InvalidTransition(f"a campaign cannot go from {src} to {dst}", de=src, para=dst)
