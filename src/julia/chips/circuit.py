"""Each chip's own circuit breaker (``chip:<id>``), opening after
``JULIA_CHIP_BREAKER_FAILURES`` counted failures; one chip's breaker never affects another."""

from __future__ import annotations

from dataclasses import replace

from julia.core.app import App
from julia.resilience.breaker import Breaker, BreakerConfig, breakers


def chip_breaker(app: App, chip_id: int) -> Breaker:
    """The breaker of one chip, with the chip threshold (3 by default), whoever made it first."""
    name = f"chip:{chip_id}"
    registry = breakers(app)
    config: BreakerConfig | None = app.extensions.get("chips.breaker_config")
    if config is None:  # the same for every chip: built once (this is on the send path)
        config = app.extensions["chips.breaker_config"] = replace(
            BreakerConfig.for_name(app.settings, name),
            failure_threshold=app.settings.chip_breaker_failures,
        )
    existing = registry.items.get(name)
    if existing is not None and existing.config is config:
        return existing
    if existing is not None and existing.config != config:
        del registry.items[name]  # made elsewhere with the service defaults
    return registry.get(name, config=config)


async def circuit_state(app: App, chip_id: int) -> str:
    """closed, open, half_open, forced_open or disabled (never raises: Redis down → local)."""
    status = await chip_breaker(app, chip_id).status()
    return status.state
