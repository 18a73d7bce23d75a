"""The handoff state machine, as data: who controls a conversation and how it changes.

A conversation is in one state: ``julia`` (she answers), ``pendente`` (a person was
asked for, nobody answered yet) or ``em_atendimento`` (a person is answering). The
last two are ``conversas.controlled_by = 'humano'``: Júlia stays quiet. Every change
goes through :data:`TRANSITIONS` (``julia.handoff.control.transition``) and is
recorded in ``handoff_transicoes``.
"""

from __future__ import annotations

from julia.core.errors import InvalidTransition

JULIA, PENDENTE, EM_ATENDIMENTO = "julia", "pendente", "em_atendimento"
STATES = (JULIA, PENDENTE, EM_ATENDIMENTO)

#: Events: a person is asked for, a person takes over, control goes back to Júlia.
SOLICITAR, ASSUMIR, DEVOLVER = "solicitar", "assumir", "devolver"

#: (state, event) -> next state. Anything else is refused.
TRANSITIONS: dict[tuple[str, str], str] = {
    (JULIA, SOLICITAR): PENDENTE,
    (JULIA, ASSUMIR): EM_ATENDIMENTO,
    (PENDENTE, ASSUMIR): EM_ATENDIMENTO,
    (PENDENTE, DEVOLVER): JULIA,
    (EM_ATENDIMENTO, DEVOLVER): JULIA,
}

#: Triggers a handoff may have (``handoffs.trigger``).
TRIGGERS = (
    "keyword",
    "gatilho",
    "agente",
    "fallbacks",
    "sentimento",
    "reserva",
    "operador",
    "chip",
)


def next_state(state: str, event: str) -> str:
    """The state after ``event``; :class:`InvalidTransition` when the table has no such move."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise InvalidTransition(
            f"handoff: cannot {event} a conversation in state {state}"
        ) from None


def controlled_by(state: str) -> str:
    """The ``conversas.controlled_by`` value of a state."""
    return "julia" if state == JULIA else "humano"
