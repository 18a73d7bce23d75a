"""Prometheus metrics of the resilience primitives. They are defined in the one metrics
module, :mod:`julia.core.metrics`, and named here for the resilience code."""

from __future__ import annotations

from julia.core.metrics import (
    CIRCUIT_LOCAL,
    CIRCUIT_REFUSED,
    CIRCUIT_STATE,
    CIRCUIT_TRANSITIONS,
    RATE_LIMIT_DECISIONS,
    STATE_VALUES,
)

__all__ = [
    "CIRCUIT_LOCAL",
    "CIRCUIT_REFUSED",
    "CIRCUIT_STATE",
    "CIRCUIT_TRANSITIONS",
    "RATE_LIMIT_DECISIONS",
    "STATE_VALUES",
]
