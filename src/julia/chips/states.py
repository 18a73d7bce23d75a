"""The chip lifecycle as data: statuses and the one table of allowed transitions.

    provisioned ──► pending ──► warming ──► ready ──► active ⇄ degraded
         (QR scan)      (21 days, trust ≥ 85)           │          │
                                                         └──► banned (final)
    any status but banned ──► retired (final)

Cooldown is a time window on a chip (``cooldown_until``), not a status. Every
status change is a ``chip_transitions`` row with its reason and actor.
"""

from __future__ import annotations

from enum import StrEnum

from julia.core.errors import ChipTransitionRefused


class Status(StrEnum):
    PROVISIONED = "provisioned"
    PENDING = "pending"
    WARMING = "warming"
    READY = "ready"
    ACTIVE = "active"
    DEGRADED = "degraded"
    BANNED = "banned"
    RETIRED = "retired"


S = Status

#: The one table of allowed transitions.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    S.PROVISIONED: frozenset({S.PENDING, S.RETIRED}),
    S.PENDING: frozenset({S.WARMING, S.PROVISIONED, S.RETIRED}),
    S.WARMING: frozenset({S.READY, S.DEGRADED, S.BANNED, S.RETIRED}),
    S.READY: frozenset({S.ACTIVE, S.DEGRADED, S.BANNED, S.RETIRED}),
    S.ACTIVE: frozenset({S.DEGRADED, S.READY, S.BANNED, S.RETIRED}),
    S.DEGRADED: frozenset({S.ACTIVE, S.READY, S.WARMING, S.BANNED, S.RETIRED}),
    S.BANNED: frozenset(),
    S.RETIRED: frozenset(),
}

#: Where ``julia chips promote`` takes a chip from each status.
PROMOTE: dict[Status, Status] = {
    S.PROVISIONED: S.PENDING,
    S.PENDING: S.WARMING,
    S.WARMING: S.READY,
    S.READY: S.ACTIVE,
    S.DEGRADED: S.ACTIVE,
}
#: Statuses ``demote`` applies to (they all go to degraded).
DEMOTABLE: frozenset[Status] = frozenset({S.WARMING, S.READY, S.ACTIVE})
#: Nothing leaves these.
FINAL: frozenset[Status] = frozenset({S.BANNED, S.RETIRED})
#: Chips that send production traffic (ready ones only in emergency mode).
SENDING: frozenset[Status] = frozenset({S.ACTIVE})
SENDING_EMERGENCY: frozenset[Status] = frozenset({S.ACTIVE, S.READY})


def allowed(src: Status | str, dst: Status | str) -> bool:
    return Status(dst) in TRANSITIONS[Status(src)]


def check(src: Status | str, dst: Status | str) -> None:
    """Raise :class:`ChipTransitionRefused` unless ``src → dst`` is in the table."""
    if not allowed(src, dst):
        raise ChipTransitionRefused(
            f"a chip cannot go from {src} to {dst}", de=str(src), para=str(dst)
        )


def sources(dst: Status) -> list[str]:
    """Every status from which ``dst`` may be reached (for ``WHERE status = ANY(...)``)."""
    return sorted(s.value for s, targets in TRANSITIONS.items() if dst in targets)
