"""The message state machine and the named outcomes, as data.

    pendente ──claim──► processando ──► enviada | pendente (retry) | dlq | cancelada
       │                                | bloqueada | incerta
       └──► expirada | cancelada | bloqueada
    incerta ──reconcile──► enviada | pendente     (or an operator: cancelada)
    dlq ──replay──► pendente

Every SQL statement that changes ``status`` names its source statuses from this
table (:func:`sources`), and ``tests/test_fila_states.py`` checks it.
"""

from __future__ import annotations

from enum import StrEnum

from julia.core.errors import InvalidTransition


class Status(StrEnum):
    PENDENTE = "pendente"
    PROCESSANDO = "processando"
    ENVIADA = "enviada"
    DLQ = "dlq"
    CANCELADA = "cancelada"
    BLOQUEADA = "bloqueada"
    INCERTA = "incerta"
    EXPIRADA = "expirada"


class Outcome(StrEnum):
    """Why a message is where it is (``fila_mensagens.outcome``)."""

    SENT = "SENT"
    RETRY = "RETRY"  # failed this time, another attempt is scheduled
    RESCHEDULED_RATE_LIMIT = "RESCHEDULED_RATE_LIMIT"
    BLOCKED_OPTOUT = "BLOCKED_OPTOUT"
    #: Another guardrail stopped it at send time (manual block, human control, contact cap).
    BLOCKED_GUARDRAIL = "BLOCKED_GUARDRAIL"
    FAILED_INVALID_NUMBER = "FAILED_INVALID_NUMBER"
    FAILED_CIRCUIT_OPEN = "FAILED_CIRCUIT_OPEN"
    FAILED_ALL_CHIPS = "FAILED_ALL_CHIPS"
    FAILED_EXPIRED = "FAILED_EXPIRED"
    FAILED_MAX_ATTEMPTS = "FAILED_MAX_ATTEMPTS"
    FAILED_PERMANENT = "FAILED_PERMANENT"  # a non-retryable gateway refusal (e.g. 400)
    OUTCOME_UNKNOWN = "OUTCOME_UNKNOWN"
    CANCELLED = "CANCELLED"
    RELEASED = "RELEASED"  # a stopping worker gave the message back unsent
    RESCUED = "RESCUED"  # its worker's lease expired before the send started
    REPLAYED = "REPLAYED"


S = Status

#: The one table of allowed transitions.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    S.PENDENTE: frozenset({S.PROCESSANDO, S.EXPIRADA, S.CANCELADA, S.BLOQUEADA}),
    S.PROCESSANDO: frozenset({S.ENVIADA, S.PENDENTE, S.DLQ, S.CANCELADA, S.BLOQUEADA, S.INCERTA}),
    S.INCERTA: frozenset({S.ENVIADA, S.PENDENTE, S.CANCELADA}),
    S.DLQ: frozenset({S.PENDENTE}),
    S.ENVIADA: frozenset(),
    S.CANCELADA: frozenset(),
    S.BLOQUEADA: frozenset(),
    S.EXPIRADA: frozenset(),
}

#: Nothing more happens to these without an operator.
TERMINAL: frozenset[Status] = frozenset({S.ENVIADA, S.CANCELADA, S.BLOQUEADA, S.EXPIRADA, S.DLQ})
#: An operator must look at these (``incerta``: unknown whether it was sent).
REVIEW: frozenset[Status] = frozenset({S.INCERTA})


def allowed(src: Status, dst: Status) -> bool:
    return dst in TRANSITIONS[src]


def check(src: Status | str, dst: Status | str) -> None:
    """Raise :class:`InvalidTransition` unless ``src → dst`` is in the table."""
    if not allowed(Status(src), Status(dst)):
        raise InvalidTransition(f"a message cannot go from {src} to {dst}", de=src, para=dst)


def sources(dst: Status) -> list[str]:
    """Every status from which ``dst`` may be reached (for ``WHERE status = ANY(...)``)."""
    return sorted(s.value for s, targets in TRANSITIONS.items() if dst in targets)
