"""What the resilience modules share: Lua scripts, Redis health, millisecond time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import redis.exceptions

from julia.core.app import App
from julia.core.logs import get_logger

log = get_logger(__name__)

#: What a Redis call raises when the server is unreachable or failing.
REDIS_ERRORS: tuple[type[BaseException], ...] = (redis.exceptions.RedisError, OSError)


def to_ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def from_ms(ms: float) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def script(app: App, name: str) -> Any:
    """The Lua script ``julia/resilience/<name>.lua`` registered on this App's Redis."""
    cache: dict[str, Any] = app.extensions.setdefault("resilience.scripts", {})
    if name not in cache:
        source = resources.files("julia.resilience").joinpath(f"{name}.lua").read_text()
        cache[name] = app.redis.register_script(source)
    return cache[name]


@dataclass
class RedisHealth:
    """After a Redis error, skip Redis for ``retry_s`` (by the App's clock) instead of
    paying a connect timeout on every call; then try it again."""

    retry_s: float
    down_until: datetime | None = None
    last_error: str | None = None

    def usable(self, now: datetime) -> bool:
        return self.down_until is None or now >= self.down_until

    def failed(self, now: datetime, exc: BaseException) -> None:
        if self.down_until is None:
            log.warning("resilience.redis_down", error=f"{type(exc).__name__}: {exc}")
        self.down_until = now + timedelta(seconds=self.retry_s)
        self.last_error = f"{type(exc).__name__}: {exc}"

    def recovered(self) -> bool:
        """Mark Redis healthy; True when it had been down (callers may resync)."""
        was_down = self.down_until is not None
        if was_down:
            log.info("resilience.redis_back")
        self.down_until = None
        self.last_error = None
        return was_down


def redis_health(app: App, user: str = "breaker") -> RedisHealth:
    """This App's view of Redis for one user (``breaker`` or ``ratelimit``): each notices
    the outage and the recovery on its own (the rate limiter refills Redis on recovery)."""
    health: RedisHealth = app.extensions.setdefault(
        f"resilience.redis_health.{user}", RedisHealth(app.settings.breaker_redis_retry_s)
    )
    return health
