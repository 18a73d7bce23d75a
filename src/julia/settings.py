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
    inbox_concurrency: int = Field(
        default=4, ge=1, description="Turns one worker process handles at the same time."
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

    # --- chips: pool, trust score, selection, health -----------------------
    chip_trust_w_age: float = Field(
        default=10, ge=0, description="Trust points for the chip's age (see age_full_days)."
    )
    chip_trust_w_delivery: float = Field(
        default=20, ge=0, description="Trust points for the 7-day delivery rate (acks / sends)."
    )
    chip_trust_w_response: float = Field(
        default=20, ge=0, description="Trust points for the response rate (doctors who replied)."
    )
    chip_trust_w_bidirectional: float = Field(
        default=10, ge=0, description="Trust points for conversations with messages both ways."
    )
    chip_trust_w_media: float = Field(
        default=5, ge=0, description="Trust points for the diversity of message types exchanged."
    )
    chip_trust_w_errors: float = Field(
        default=15, ge=0, description="Trust points for few send errors in the last 24 h."
    )
    chip_trust_w_blocks: float = Field(
        default=10, ge=0, description="Trust points for a low 7-day block rate."
    )
    chip_trust_w_phase: float = Field(
        default=10, ge=0, description="Trust points for the lifecycle phase (active, ready...)."
    )
    chip_trust_age_full_days: float = Field(
        default=60, gt=0, description="Age in days at which the age factor is full."
    )
    chip_trust_window_days: float = Field(
        default=7, gt=0, description="Window of the delivery, response and block rates, in days."
    )
    chip_trust_min_sends: int = Field(
        default=20, ge=1, description="Sends in the window before rates count fully (evidence)."
    )
    chip_trust_bidirectional_full: int = Field(
        default=20, ge=1, description="Bidirectional conversations at which that factor is full."
    )
    chip_trust_media_full: int = Field(
        default=3, ge=1, description="Distinct message types at which the media factor is full."
    )
    chip_trust_errors_zero_at: int = Field(
        default=10, ge=1, description="Send errors in 24 h at which the errors factor is zero."
    )
    chip_trust_block_zero_at: float = Field(
        default=0.05, gt=0, description="Block rate at which the block factor is zero."
    )
    chip_trust_alert_levels: list[str] = Field(
        default=["vermelho", "critico"], description="Falling to these levels raises an alert."
    )
    chip_threshold_prospeccao: int = Field(
        default=80, ge=0, le=100, description="Trust a chip needs to send prospeccao/campanha."
    )
    chip_threshold_followup: int = Field(
        default=60, ge=0, le=100, description="Trust a chip needs to send a followup."
    )
    chip_threshold_resposta: int = Field(
        default=40, ge=0, le=100, description="Trust a chip needs to send a resposta (and others)."
    )
    chip_emergency_drop: int = Field(
        default=20, ge=0, le=100, description="Emergency mode lowers every threshold by this much."
    )
    chip_max_send_attempts: int = Field(
        default=3, ge=1, description="Different chips one send tries before FAILED_ALL_CHIPS."
    )
    chip_cooldown_429_min: float = Field(
        default=5, ge=0, description="Cooldown of a chip after a 429 from WhatsApp, in minutes."
    )
    chip_cooldown_400_min: float = Field(
        default=30, ge=0, description="Cooldown of a chip after a 400 from WhatsApp, in minutes."
    )
    chip_cooldown_403_min: float = Field(
        default=60, ge=0, description="Cooldown of a chip after a 403 from WhatsApp, in minutes."
    )
    chip_breaker_failures: int = Field(
        default=3, ge=1, description="Counted failures that open a chip's own breaker."
    )
    chip_warming_days: float = Field(
        default=21, gt=0, description="How long a new chip warms up before it may graduate."
    )
    chip_warming_steps: list[tuple[float, float]] = Field(
        default=[(0.10, 3), (0.25, 7), (0.50, 14), (0.75, 21)],
        description="Warming limits as [fraction, until day] pairs (JSON list).",
    )
    chip_graduation_trust: int = Field(
        default=85, ge=0, le=100, description="Trust a warmed-up chip needs to become ready."
    )
    chip_recovery_steps: list[tuple[float, float]] = Field(
        default=[(0.10, 1), (0.25, 2), (0.50, 3)],
        description="Limits after a restriction as [fraction, days] pairs, in order (JSON list).",
    )
    chip_pool_min_active: int = Field(
        default=3, ge=0, description="Active chips the pool keeps (refilled from ready ones)."
    )
    chip_pool_ready_buffer: int = Field(
        default=1, ge=0, description="Ready chips below which the pool check warns."
    )
    chip_pool_warming_buffer: int = Field(
        default=1, ge=0, description="Warming chips below which the pool check warns."
    )
    chip_disconnected_alert_ratio: float = Field(
        default=0.30, ge=0, le=1, description="Alert when more than this share of chips is down."
    )
    chip_demote_trust_below: int = Field(
        default=40, ge=0, le=100, description="Health monitor demotes an active chip below this."
    )
    chip_demote_errors_24h: int = Field(
        default=10, ge=0, description="Send errors in 24 h above which an active chip is demoted."
    )
    chip_demote_disconnected_min: float = Field(
        default=30, ge=0, description="Minutes disconnected after which an active chip is demoted."
    )
    chip_block_rate_max: float = Field(
        default=0.02, ge=0, le=1, description="Block rate above which a chip is rescored, demoted."
    )
    chip_sync_interval_s: float = Field(
        default=120, gt=0, description="Seconds between gateway syncs of the pool (scheduler)."
    )
    chip_trust_interval_s: float = Field(
        default=900, gt=0, description="Seconds between trust recalculations (scheduler)."
    )
    chip_pool_check_interval_s: float = Field(
        default=300, gt=0, description="Seconds between pool checks (scheduler)."
    )
    chip_migration_recent_h: float = Field(
        default=24, ge=0, description="Migrated conversations active this recently get a message."
    )
    chip_migration_texto: str = Field(
        default="Oi! Aqui é a Júlia. A partir de agora falo com você por este número, "
        "tudo bem? Seguimos de onde paramos.",
        description="Continuation message sent from the new chip after a migration.",
    )

    # --- operations: scheduler, jobs, alerts, health, metrics --------------
    scheduler_misfire_grace_s: int = Field(
        default=60, ge=1, description="A tick missed by more than this is skipped, not run late."
    )
    scheduler_metrics_port: int = Field(
        default=9102, ge=0, description="Port of the scheduler's Prometheus metrics (0: off)."
    )
    worker_metrics_port: int = Field(
        default=9101, ge=0, description="Port of the worker's Prometheus metrics (0: off)."
    )
    metrics_host: str = Field(
        default="127.0.0.1", description="Address the worker's and scheduler's metrics bind to."
    )
    jobs_disabled: list[str] = Field(
        default=[], description="Jobs the scheduler leaves out (JSON list of job names)."
    )
    job_lock_ttl_s: float = Field(
        default=120.0, gt=0, description="Lifetime of a job run's lock (renewed while it runs)."
    )
    job_late_factor: float = Field(
        default=2.0, gt=1, description="A job not run for this many intervals is late (alert)."
    )
    watchdog_interval_s: float = Field(
        default=60.0, gt=0, description="Seconds between watchdog runs (heartbeats, late jobs)."
    )
    worker_watch_interval_s: float = Field(
        default=300.0, gt=0, description="Seconds between a worker's checks on the scheduler."
    )
    fila_rescue_interval_s: float = Field(
        default=900.0, gt=0, description="Seconds between rescues of stuck queue messages."
    )
    fila_expire_at: str = Field(
        default="03:00", description="Daily time (HH:MM, business time zone) of the expiry job."
    )
    backlog_check_interval_s: float = Field(
        default=600.0, gt=0, description="Seconds between queue backlog checks."
    )
    chip_health_interval_s: float = Field(
        default=300.0, gt=0, description="Seconds between chip health checks (auto-demotion)."
    )
    chip_counters_reset_at: str = Field(
        default="00:00", description="Daily time (HH:MM) the chips' 24 h error counters reset."
    )
    inbox_rescue_interval_s: float = Field(
        default=300.0, gt=0, description="Seconds between rescues of stuck inbox turns."
    )
    alert_inbox_stuck_min: float = Field(
        default=10.0, gt=0, description="Inbox alert: a message due for its turn this long."
    )
    partitions_months_ahead: int = Field(
        default=2, ge=1, description="Monthly interacoes partitions kept created ahead."
    )
    metrics_snapshot_interval_s: float = Field(
        default=300.0, gt=0, description="Seconds between metrics snapshots."
    )
    metrics_snapshot_retention_days: float = Field(
        default=7.0, gt=0, description="Days metrics snapshots are kept."
    )
    alert_backlog_pending: int = Field(
        default=50, ge=0, description="Backlog alert: more than this many messages pending..."
    )
    alert_backlog_age_min: float = Field(
        default=30.0, gt=0, description="...due for longer than this many minutes."
    )
    alert_errors_count: int = Field(
        default=10, ge=0, description="Errors alert: more than this many send errors..."
    )
    alert_errors_window_min: float = Field(
        default=5.0, gt=0, description="...within this many minutes (broken down by type)."
    )
    alert_dlq_growth: int = Field(
        default=5, ge=1, description="DLQ growth alert: this many messages dead-lettered..."
    )
    alert_dlq_window_min: float = Field(
        default=60.0, gt=0, description="...within this many minutes."
    )
    alert_heartbeat_max_s: float = Field(
        default=120.0, gt=0, description="A worker whose last beat is older than this alerts."
    )
    alert_cooldown_min: float = Field(
        default=30.0, gt=0, description="Default cooldown: one alert of a kind per this long."
    )
    alert_cooldowns_min: dict[str, float] = Field(
        default={"fila.backlog": 60, "job.late": 60, "fila.dlq_growth": 60},
        description="Cooldown in minutes per alert kind, overriding the default (JSON).",
    )
    slack_webhook_url: SecretStr | None = Field(
        default=None, description="Slack incoming webhook URL for alerts (unset: not sent)."
    )
    slack_timeout_s: float = Field(
        default=5.0, gt=0, description="Timeout of one Slack webhook call."
    )
    slack_attempts: int = Field(
        default=3, ge=1, description="Attempts to deliver one alert to Slack before giving up."
    )
    slack_flush_s: float = Field(
        default=10.0, ge=0, description="How long a short-lived command waits for Slack at exit."
    )
    slack_resend_hours: float = Field(
        default=24.0, gt=0, description="Undelivered alerts younger than this are sent again."
    )
    health_healthy_score: int = Field(
        default=80, ge=0, le=100, description="Score from which a component is healthy."
    )
    health_degraded_score: int = Field(
        default=50, ge=0, le=100, description="Score from which a component is degraded."
    )
    top_refresh_s: float = Field(
        default=2.0, gt=0, description="Seconds between refreshes of julia top."
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
