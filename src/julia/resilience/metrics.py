"""Prometheus metrics of the resilience primitives (gathered with the others later)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

#: Numeric value of each breaker state in ``julia_circuit_state``.
STATE_VALUES = {"closed": 0, "half_open": 1, "open": 2, "forced_open": 3, "disabled": 4}

CIRCUIT_STATE = Gauge(
    "julia_circuit_state",
    "Circuit breaker state: 0 closed, 1 half_open, 2 open, 3 forced_open, 4 disabled.",
    ["name"],
)
CIRCUIT_TRANSITIONS = Counter(
    "julia_circuit_transitions",
    "Circuit breaker transitions seen by this process.",
    ["name", "from_state", "to_state"],
)
CIRCUIT_REFUSED = Counter(
    "julia_circuit_refused", "Calls refused by an open circuit breaker.", ["name"]
)
CIRCUIT_LOCAL = Gauge(
    "julia_circuit_local_fallback",
    "1 while this process keeps breaker state locally because Redis is unreachable.",
)
RATE_LIMIT_DECISIONS = Counter(
    "julia_rate_limit_decisions",
    "Outbound rate-limit decisions by limit ('ok' when allowed) and backend.",
    ["limit", "backend"],
)
