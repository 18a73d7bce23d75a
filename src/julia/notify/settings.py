"""Alerts' delivery to Slack and their cooldowns.
Composed into :class:`julia.settings.Settings`."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings


class NotifySettings(BaseSettings):
    """Alerts' delivery to Slack and their cooldowns."""

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
