"""Where the queue meets the resilience primitives (:mod:`julia.resilience`).

The send path calls only these three functions, so what guards a send is
visible in one place: the rate limits (a denial reschedules the message to
when the limit frees up), the circuit breakers around the gateway call, and
the retry delay (the shared exponential backoff with full jitter).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from julia.core.app import App
from julia.resilience import ratelimit
from julia.resilience.breaker import breakers
from julia.resilience.retry import backoff_delay

if TYPE_CHECKING:
    from julia.fila.queue import Mensagem
    from julia.outbound.send import Route

T = TypeVar("T")


async def rate_limit(app: App, message: Mensagem, route: Route) -> ratelimit.Decision:
    """Check-and-take the message's rate-limit slots (``JULIA_RATE_LIMITS_ENABLED``).

    Operator (``humano``) and ``sistema`` messages count like replies: only the
    per-chip burst limit applies to them.
    """
    if route.decision is not None:  # the chip pool already reserved (or found no chip)
        return route.decision
    tipo = message.tipo if message.tipo in ratelimit.TIPOS else "resposta"
    return await ratelimit.take(app, tipo=tipo, telefone=message.telefone, chip_id=route.chip_key)


async def give_back(app: App, decision: ratelimit.Decision | None) -> None:
    """Return the slots of a message that was not sent after all."""
    if decision is not None and decision.ticket is not None:
        await ratelimit.give_back(app, decision.ticket)


async def through_breakers(app: App, route: Route, call: Callable[[], Awaitable[T]]) -> T:
    """Run the gateway call through the route's breakers (``evolution``, later ``chip:<id>``).

    An open breaker raises :class:`julia.core.errors.CircuitOpen` without calling.
    """
    registry = breakers(app)

    async def nest(names: tuple[str, ...]) -> T:
        if not names:
            return await call()
        async with registry.get(names[0]).guard():
            return await nest(names[1:])

    return await nest(route.breakers)


def retry_delay(app: App, attempt: int, rng: random.Random | None = None) -> float:
    """Seconds before the next try after failed attempt ``attempt`` (1 = the first)."""
    s = app.settings
    return backoff_delay(
        max(attempt - 1, 0), base_s=s.fila_retry_base_s, cap_s=s.fila_retry_cap_s, rng=rng
    )
