"""Circuit breakers, rate limits, business hours, locks and retry.
Composed into :class:`julia.settings.Settings`."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings


class ResilienceSettings(BaseSettings):
    """Circuit breakers, rate limits, business hours, locks and retry."""

    breaker_failure_threshold: int = Field(
        default=5, ge=1, description="Consecutive counted failures that open a circuit breaker."
    )
    breaker_failure_rate: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Failure rate over the last breaker_window_calls calls that opens (0: off).",
    )
    breaker_window_calls: int = Field(
        default=20, ge=1, description="Size of the breaker's sliding window of recent calls."
    )
    breaker_min_calls: int = Field(
        default=10, ge=1, description="Calls in the window before the failure rate is judged."
    )
    breaker_open_base_s: float = Field(
        default=60.0, gt=0, description="Seconds a breaker stays open the first time."
    )
    breaker_open_factor: float = Field(
        default=2.0, ge=1, description="Growth of the open time with each consecutive re-open."
    )
    breaker_open_max_s: float = Field(
        default=600.0, gt=0, description="Longest time a breaker stays open."
    )
    breaker_half_open_calls: int = Field(
        default=1, ge=1, description="Trial calls let through while half-open; all must succeed."
    )
    breaker_half_open_retry_s: float = Field(
        default=5.0, gt=0, description="Retry hint for calls refused while the trials run."
    )
    breaker_count_timeouts: bool = Field(
        default=False, description="Whether a timeout counts as a breaker failure."
    )
    breaker_chip_count_status: list[int] = Field(
        default=[403, 429], description="4xx statuses that count as failures for chip breakers."
    )
    breaker_trust_s: float = Field(
        default=1.0,
        ge=0,
        description="How long a worker lets calls through a breaker it saw closed and clean"
        " without asking Redis, while it hears every change (0: ask on every call).",
    )
    breaker_redis_retry_s: float = Field(
        default=5.0,
        gt=0,
        description="After a Redis error, seconds on local state before retrying it.",
    )
    rate_limits_enabled: bool = Field(
        default=True, description="Whether outbound rate limits are enforced at all."
    )
    rate_limit_medico_daily: int = Field(
        default=3, ge=0, description="Proactive messages per doctor in any 24 h."
    )
    rate_limit_chip_hourly: int = Field(
        default=20, ge=0, description="Proactive messages per chip in any hour."
    )
    rate_limit_chip_daily: int = Field(
        default=100, ge=0, description="Proactive messages per chip in any 24 h."
    )
    rate_limit_interval_min_s: float = Field(
        default=45.0, ge=0, description="Shortest random gap between proactive sends of a chip."
    )
    rate_limit_interval_max_s: float = Field(
        default=180.0, ge=0, description="Longest random gap between proactive sends of a chip."
    )
    rate_limit_campanha_weight: int = Field(
        default=2, ge=1, description="How many slots one campaign message takes."
    )
    rate_limit_chip_burst: int = Field(
        default=10, ge=1, description="Messages of any type per chip in one burst window."
    )
    rate_limit_chip_burst_window_s: float = Field(
        default=60.0, gt=0, description="The per-chip burst window, in seconds."
    )
    rate_limit_fail_closed_retry_s: float = Field(
        default=60.0, gt=0, description="Retry hint when Redis and Postgres both fail (closed)."
    )
    rate_limit_override_default_h: float = Field(
        default=24.0, gt=0, description="How long a doctor override lasts when --ate is not given."
    )
    business_hours_start: str = Field(
        default="08:00", description="Start of business hours for proactive messages (HH:MM)."
    )
    business_hours_end: str = Field(
        default="20:00", description="End of business hours for proactive messages (HH:MM)."
    )
    business_days: list[int] = Field(
        default=[0, 1, 2, 3, 4], description="Business weekdays, 0 = Monday (JSON list)."
    )
    lock_ttl_s: float = Field(
        default=30.0, gt=0, description="Default lifetime of a distributed lock."
    )
    retry_attempts: int = Field(
        default=3, ge=1, description="Default attempts (first call included) of the retry helper."
    )
    retry_base_s: float = Field(default=0.5, gt=0, description="Base delay of retry backoff.")
    retry_cap_s: float = Field(default=30.0, gt=0, description="Longest delay of retry backoff.")
    retry_budget_max: float = Field(
        default=10.0, gt=0, description="Retry budget tokens; retries stop below half of them."
    )
    retry_budget_ratio: float = Field(
        default=0.1, ge=0, description="Tokens a success gives back to the retry budget."
    )
