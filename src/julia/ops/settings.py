"""Operations: the scheduler, jobs, monitors' thresholds, health, metrics.
Composed into :class:`julia.settings.Settings`."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings


class OpsSettings(BaseSettings):
    """Operations: the scheduler, jobs, monitors' thresholds, health, metrics."""

    scheduler_misfire_grace_s: int = Field(
        default=60, ge=1, description="A tick missed by more than this is skipped, not run late."
    )
    scheduler_metrics_port: int = Field(
        default=9102, ge=0, description="Port of the scheduler's Prometheus metrics (0: off)."
    )
    worker_metrics_port: int = Field(
        default=9101, ge=0, description="Port of the worker's Prometheus metrics (0: off)."
    )
    worker_metrics_refresh_s: float = Field(
        default=15.0, gt=0,
        description="Seconds between a worker's refreshes of the shared-state gauges it serves.",
    )  # fmt: skip
    retention_at: str = Field(
        default="03:30", description="Business time of the daily retention job (HH:MM)."
    )
    retention_webhook_payload_days: int = Field(
        default=30, ge=0,
        description="Raw webhook payloads are emptied after this many days (parsed rows"
        " stay; 0 keeps).",
    )  # fmt: skip
    retention_fila_days: int = Field(
        default=90, ge=0,
        description="Sent, cancelled, expired and blocked queue rows (and their events) are"
        " deleted after this many days (0 keeps). Keep it above any idempotency-key reuse.",
    )  # fmt: skip
    retention_interacoes_months: int = Field(
        default=24, ge=0,
        description="interacoes partitions older than this many months are detached (0 keeps).",
    )  # fmt: skip
    retention_interacoes_drop: bool = Field(
        default=False, description="Drop the interacoes partitions retention detaches."
    )
    retention_selection_log_days: int = Field(
        default=30, ge=0, description="Chip selection log rows are deleted after this many days."
    )
    retention_job_executions_days: int = Field(
        default=90, ge=0,
        description="Job runs are deleted after this many days (each job's last run stays).",
    )  # fmt: skip
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
    health_healthy_score: int = Field(
        default=80, ge=0, le=100, description="Score from which a component is healthy."
    )
    health_degraded_score: int = Field(
        default=50, ge=0, le=100, description="Score from which a component is degraded."
    )
    top_refresh_s: float = Field(
        default=2.0, gt=0, description="Seconds between refreshes of julia top."
    )
