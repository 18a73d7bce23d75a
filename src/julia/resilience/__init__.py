"""Reliability primitives used everywhere: circuit breakers, rate limits, locks, retry.

- :mod:`julia.resilience.breaker`: ``breakers(app).get("evolution")``, ``.chip(id)``
- :mod:`julia.resilience.ratelimit`: ``take(app, tipo=..., telefone=..., chip_id=...)``
- :mod:`julia.resilience.locks`: ``async with lock(app, "name"):``
- :mod:`julia.resilience.retry`: ``await retry(fn, ...)`` and ``backoff_delay(n, ...)``

See docs/resilience.md.
"""
