"""Every knob Júlia has, in one pydantic-settings class (env prefix ``JULIA_``).

Each field carries its default from the requirements and a one-line
``description``; ``julia config show`` prints the effective values, secrets
masked, and a test fails on a field without a description.
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    return Path.home() / ".local" / "share" / "julia"


def _default_operator() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers): still name someone
        return "unknown"


class Settings(BaseSettings):
    """The effective configuration: environment, then ``.env``, then defaults."""

    model_config = SettingsConfigDict(
        env_prefix="JULIA_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    # --- foundation -------------------------------------------------------
    home: Path = Field(
        default_factory=_default_home,
        description="Folder for the embedded servers' data and other local state.",
    )
    database_url: SecretStr | None = Field(
        default=None,
        description="PostgreSQL 14+ URL (Supabase works); unset starts the embedded server.",
    )
    redis_url: SecretStr | None = Field(
        default=None, description="Redis URL; unset starts the embedded server."
    )
    redis_namespace: str = Field(
        default="julia", description="Prefix of every Redis key this deployment writes."
    )
    db_prepared_statements: bool = Field(
        default=True,
        description="Server-side prepared statements; turn off behind a transaction pooler.",
    )
    db_pool_min: int = Field(default=1, ge=0, description="Minimum Postgres pool connections.")
    db_pool_max: int = Field(default=10, ge=1, description="Maximum Postgres pool connections.")
    db_connect_timeout_s: float = Field(
        default=10.0, gt=0, description="Seconds to wait for a Postgres connection."
    )
    http_connect_timeout_s: float = Field(
        default=5.0, gt=0, description="Connect timeout of the shared HTTP client."
    )
    http_read_timeout_s: float = Field(
        default=15.0, gt=0, description="Read timeout of the shared HTTP client."
    )
    http_max_connections: int = Field(
        default=100, ge=1, description="Connection pool size of the shared HTTP client."
    )
    operator: str = Field(
        default_factory=_default_operator,
        description="Who is acting, recorded in the audit log (default: the OS user).",
    )
    timezone: str = Field(
        default="America/Sao_Paulo", description="Business time zone for hours and schedules."
    )
    log_level: str = Field(default="INFO", description="Log level: DEBUG, INFO, WARNING, ERROR.")
    log_format: str = Field(
        default="auto", description="Log format: json, console, or auto (json when not a tty)."
    )
    migrations_dir: Path | None = Field(
        default=None, description="Folder of NNNN_name.sql migrations (default: the bundled ones)."
    )

    # --- fila, worker, gateways (outbound queue) -----------------------------
    fila_lease_s: float = Field(
        default=60.0, gt=0, description="How long a worker holds claimed messages (the lease)."
    )
    fila_max_tentativas: int = Field(
        default=5, ge=1, description="Send attempts of a message before it goes to the DLQ."
    )
    fila_retry_base_s: float = Field(
        default=10.0, gt=0, description="Base delay of the queue's retry backoff (full jitter)."
    )
    fila_retry_cap_s: float = Field(
        default=1800.0, gt=0, description="Longest delay between two send attempts."
    )
    fila_expire_after_h: float = Field(
        default=24.0, gt=0, description="A message pending this long past its due time expires."
    )
    fila_default_prioridade: int = Field(
        default=5, ge=0, le=10, description="Priority of a message when none is given (10 first)."
    )
    wa_check_cache_ttl_s: int = Field(
        default=7 * 86400, ge=60, description="How long a whatsappNumbers answer is cached."
    )
    worker_concurrency: int = Field(
        default=20, ge=1, description="Gateway sends one worker process runs at once."
    )
    worker_batch_size: int = Field(
        default=100, ge=1, description="Messages a worker claims in one round trip."
    )
    worker_poll_interval_s: float = Field(
        default=0.5, gt=0, description="Seconds between polls when no NOTIFY arrives."
    )
    worker_grace_s: float = Field(
        default=30.0, ge=0, description="On SIGTERM, seconds in-flight sends get to finish."
    )
    worker_heartbeat_s: float = Field(
        default=10.0, gt=0, description="Seconds between worker heartbeats."
    )
    worker_heartbeat_ttl_s: int = Field(
        default=120, ge=1, description="A worker whose last beat is older than this is dead."
    )
    worker_rescue_interval_s: float = Field(
        default=30.0, gt=0, description="Seconds between the worker's expired-lease rescues."
    )
    gateway_provider: str = Field(
        default="evolution", description="Gateway of the default instance: evolution or zapi."
    )
    evolution_url: str = Field(
        default="http://127.0.0.1:8080", description="Evolution API v2 base URL."
    )
    evolution_api_key: SecretStr | None = Field(
        default=None, description="Evolution API key (sent as the apikey header)."
    )
    evolution_instance: str = Field(
        default="julia", description="The instance that sends everything until chips land."
    )
    zapi_url: str = Field(default="https://api.z-api.io", description="Z-API base URL.")
    zapi_instance: str = Field(default="", description="Z-API instance id of the default chip.")
    zapi_token: SecretStr | None = Field(
        default=None, description="Z-API instance token (part of the URL path)."
    )
    zapi_client_token: SecretStr | None = Field(
        default=None, description="Z-API account security token (Client-Token header)."
    )

    # --- resilience: breakers, rate limits, locks, retry -------------------
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

    # --- inbound: shim, inbox, processors ----------------------------------
    webhook_token: SecretStr | None = Field(
        default=None,
        description="Secret Evolution/Z-API webhooks must carry (X-Webhook-Token or Bearer JWT).",
    )
    chatwoot_webhook_secret: SecretStr | None = Field(
        default=None,
        description="Chatwoot webhook secret; when set X-Chatwoot-Signature is verified.",
    )
    chatwoot_webhook_tolerance_s: int = Field(
        default=300, ge=1, description="Max age in seconds of a signed Chatwoot webhook timestamp."
    )
    webhook_max_body_bytes: int = Field(
        default=5_000_000, ge=1024, description="Largest webhook body accepted (bigger is 413)."
    )
    inbox_debounce_s: float = Field(
        default=4.0, ge=0, description="A turn waits this long after a doctor's last message."
    )
    inbox_debounce_max_s: float = Field(
        default=15.0,
        ge=0,
        description="A turn never waits longer than this after its first message.",
    )
    inbox_lease_s: float = Field(
        default=120.0,
        gt=0,
        description="Per-conversation lease a worker holds while processing a turn.",
    )
    inbox_poll_s: float = Field(
        default=0.5, gt=0, description="How often an idle inbox consumer looks for ready turns."
    )
    inbox_max_attempts: int = Field(
        default=5, ge=1, description="Attempts of a failing turn before it is parked as erro."
    )
    inbox_retry_base_s: float = Field(
        default=5.0, gt=0, description="First retry delay of a failing turn (doubles each attempt)."
    )
    inbox_retry_max_s: float = Field(
        default=300.0, gt=0, description="Longest retry delay of a failing turn."
    )
    inbox_long_message_chars: int = Field(
        default=2000, ge=100, description="A turn longer than this is trimmed and flagged as long."
    )
    handoff_keywords: str = Field(
        default="atendente,falar com humano,falar com uma pessoa,pessoa de verdade,"
        "falar com alguém,supervisor,reclamação",
        description="Comma-separated phrases that ask for a human (handoff trigger).",
    )
    media_dir: Path | None = Field(
        default=None,
        description="Folder for inbound media when Supabase is not set (JULIA_HOME/media).",
    )
    media_supabase_url: str | None = Field(
        default=None, description="Supabase project URL for inbound media storage."
    )
    media_supabase_key: SecretStr | None = Field(
        default=None, description="Supabase service key for inbound media storage."
    )
    media_supabase_bucket: str = Field(
        default="julia-media", description="Supabase Storage bucket for inbound media."
    )

    def masked(self) -> dict[str, Any]:
        """Effective values as plain data, secrets and URL passwords masked."""
        from julia.redact import mask_secret, mask_url

        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                raw = value.get_secret_value()
                value = mask_url(raw) if "://" in raw else mask_secret(raw)
            elif isinstance(value, Path):
                value = str(value)
            out[name] = value
        return out

    @staticmethod
    def secret(value: SecretStr | None) -> str | None:
        return value.get_secret_value() if value is not None else None
