"""The one retry helper: exponential backoff with full jitter, a cap and a retry budget.

    result = await retry(app, "evolution", lambda: gateway.send_text(...))
    delay = backoff_delay(attempt, base_s=..., cap_s=...)   # for scheduled retries (fila)

Full jitter (AWS Architecture Blog, "Exponential Backoff and Jitter"): the n-th
retry waits ``uniform(0, min(cap, base * factor**n))``, which spreads retrying
clients apart. The budget (gRPC's retry throttling) is per name and per process:
every failure spends a token, every success gives back ``ratio``; while fewer than
half the tokens are left, failures are not retried, so a dead service is not
hammered by retries on top of calls. Sleeping goes through ``app.clock``.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx

from julia.core.app import App
from julia.core.errors import CircuitOpen
from julia.core.logs import get_logger
from julia.resilience.breaker import status_code_of

log = get_logger(__name__)
T = TypeVar("T")


def backoff_ceiling(attempt: int, *, base_s: float, cap_s: float, factor: float = 2.0) -> float:
    """The longest wait before retry ``attempt`` (0 = the first retry)."""
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    return min(cap_s, base_s * factor ** min(attempt, 64))


def backoff_delay(
    attempt: int,
    *,
    base_s: float,
    cap_s: float,
    factor: float = 2.0,
    rng: random.Random | None = None,
) -> float:
    """The wait before retry ``attempt`` with full jitter: uniform(0, ceiling)."""
    ceiling = backoff_ceiling(attempt, base_s=base_s, cap_s=cap_s, factor=factor)
    return (rng or random).uniform(0, ceiling)


@dataclass
class RetryBudget:
    """Token bucket of retries: retry only while more than half the tokens are left."""

    max_tokens: float
    ratio: float
    tokens: float = -1.0

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.max_tokens

    def can_retry(self) -> bool:
        return self.tokens > self.max_tokens / 2

    def on_failure(self) -> None:
        self.tokens = max(0.0, self.tokens - 1)

    def on_success(self) -> None:
        self.tokens = min(self.max_tokens, self.tokens + self.ratio)


def budget(app: App, name: str) -> RetryBudget:
    """The App's retry budget for ``name`` (one per service)."""
    budgets: dict[str, RetryBudget] = app.extensions.setdefault("retry_budgets", {})
    if name not in budgets:
        s = app.settings
        budgets[name] = RetryBudget(s.retry_budget_max, s.retry_budget_ratio)
    return budgets[name]


def retryable(exc: BaseException) -> bool:
    """Default: an error's own boolean ``retryable`` attribute if it has one; otherwise
    timeouts, network errors, 5xx and 429 are worth retrying, other 4xx are not. A
    refusal by an open breaker never is. Reads ``kind``/``status_code`` attributes."""
    if isinstance(exc, CircuitOpen):
        return False
    explicit = getattr(exc, "retryable", None)
    if isinstance(explicit, bool):  # the error knows (e.g. julia.errors.GatewayError)
        return explicit
    if getattr(exc, "kind", None) in ("timeout", "network", "connection"):
        return True
    status = status_code_of(exc)
    if status is not None:
        return status >= 500 or status == 429
    return isinstance(exc, TimeoutError | httpx.TransportError | ConnectionError)


async def retry(
    app: App,
    name: str,
    fn: Callable[[], Awaitable[T]],
    *,
    attempts: int | None = None,
    base_s: float | None = None,
    cap_s: float | None = None,
    retry_on: Callable[[BaseException], bool] = retryable,
    rng: random.Random | None = None,
) -> T:
    """``await fn()``, retrying what ``retry_on`` accepts, up to ``attempts`` calls in all,
    while ``name``'s budget allows. The last error is re-raised unchanged. An error with a
    ``retry_after``/``retry_after_s`` (seconds) attribute waits at least that long (capped)."""
    s = app.settings
    attempts = attempts or s.retry_attempts
    base_s = base_s or s.retry_base_s
    cap_s = cap_s or s.retry_cap_s
    spend = budget(app, name)
    attempt = 0
    while True:
        try:
            result = await fn()
        except Exception as exc:
            spend.on_failure()
            if attempt + 1 >= attempts or not retry_on(exc):
                raise
            if not spend.can_retry():
                log.warning("retry.budget_exhausted", name=name, error=type(exc).__name__)
                raise
            delay = backoff_delay(attempt, base_s=base_s, cap_s=cap_s, rng=rng)
            hint = getattr(exc, "retry_after", None) or getattr(exc, "retry_after_s", None)
            if isinstance(hint, int | float):
                delay = min(cap_s, max(delay, float(hint)))
            log.info(
                "retry.scheduled", name=name, attempt=attempt + 1, delay_s=round(delay, 3),
                error=type(exc).__name__,
            )  # fmt: skip
            await app.clock.sleep(delay)
            attempt += 1
        else:
            spend.on_success()
            return result
