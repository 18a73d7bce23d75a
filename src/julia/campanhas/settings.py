"""Campaigns: pace, batches, auto-pause thresholds.
Composed into :class:`julia.settings.Settings`."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings


class CampanhasSettings(BaseSettings):
    """Campaigns: pace, batches, auto-pause thresholds."""

    campanha_ritmo_default: int = Field(
        default=60, ge=1, description="Messages per hour of a campaign when none is given."
    )
    campanha_batch_size: int = Field(
        default=1000, ge=1, le=10000, description="Messages enqueued in one round trip."
    )
    campanha_jitter: float = Field(
        default=0.3, ge=0, lt=1,
        description="Random share of the gap between two campaign messages (0.3: ±30 %).",
    )  # fmt: skip
    campanha_reply_days: float = Field(
        default=7.0, gt=0, description="A reply within this many days counts for the campaign."
    )
    campanha_max_optout_rate: float = Field(
        default=0.02, ge=0, le=1, description="Opt-outs / sent above which a campaign pauses."
    )
    campanha_max_failure_rate: float = Field(
        default=0.10, ge=0, le=1, description="Failed / attempted above which a campaign pauses."
    )
    campanha_min_sample: int = Field(
        default=20, ge=1, description="Sends before the rate thresholds are judged."
    )
    campanha_stall_minutes: float = Field(
        default=30.0, gt=0,
        description="A sending campaign with messages due this long and nothing sent alerts.",
    )  # fmt: skip
    campanha_tick_interval_s: float = Field(
        default=300.0, gt=0, description="How often the campaign job starts, checks and alerts."
    )
