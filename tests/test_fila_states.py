"""The state machine is data, and the database agrees with it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from julia.core.errors import InvalidTransition
from julia.fila import queue, states
from julia.fila.states import REVIEW, TERMINAL, TRANSITIONS, Outcome, Status, check

MIGRATION = Path(__file__).resolve().parents[1] / "migrations" / "0002_fila.sql"


def test_the_table_covers_every_status_and_only_known_ones() -> None:
    assert set(TRANSITIONS) == set(Status)
    assert all(targets <= set(Status) for targets in TRANSITIONS.values())


def test_the_issue_s_transitions_are_allowed() -> None:
    S = Status
    for dst in (S.ENVIADA, S.PENDENTE, S.DLQ, S.CANCELADA, S.BLOQUEADA, S.INCERTA):
        check(S.PROCESSANDO, dst)
    for dst in (S.PROCESSANDO, S.EXPIRADA, S.CANCELADA):
        check(S.PENDENTE, dst)


@pytest.mark.parametrize(
    ("src", "dst"),
    [("enviada", "pendente"), ("pendente", "enviada"), ("expirada", "pendente"),
     ("cancelada", "processando"), ("dlq", "enviada"), ("bloqueada", "pendente")],
)  # fmt: skip
def test_other_moves_are_refused(src: str, dst: str) -> None:
    with pytest.raises(InvalidTransition):
        check(src, dst)


def test_every_non_review_state_but_pending_ones_is_terminal() -> None:
    moving = {Status.PENDENTE, Status.PROCESSANDO}
    assert set(Status) == TERMINAL | REVIEW | moving
    assert all(not TRANSITIONS[s] for s in TERMINAL - {Status.DLQ})  # dlq: only a replay


def test_the_database_check_constraint_lists_exactly_these_statuses() -> None:
    sql = MIGRATION.read_text()
    block = re.search(
        r"status\s+text NOT NULL DEFAULT 'pendente' CHECK \(status IN\s*\(([^)]*)\)", sql
    )
    assert block is not None
    assert set(re.findall(r"'(\w+)'", block.group(1))) == {s.value for s in Status}


def test_outcomes_named_by_the_issue_exist() -> None:
    names = "SENT BLOCKED_OPTOUT FAILED_INVALID_NUMBER FAILED_CIRCUIT_OPEN FAILED_ALL_CHIPS"
    names += " FAILED_EXPIRED FAILED_MAX_ATTEMPTS OUTCOME_UNKNOWN"
    assert [Outcome(n).value for n in names.split()] == names.split()


def test_sources_reads_the_table() -> None:
    assert states.sources(Status.CANCELADA) == ["incerta", "pendente", "processando"]
    assert queue.TIPOS == ("resposta", "followup", "prospeccao", "campanha", "humano", "sistema")
