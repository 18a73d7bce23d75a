"""The chip pool: trust score, selection, lifecycle, health.
Composed into :class:`julia.settings.Settings`."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings


class ChipsSettings(BaseSettings):
    """The chip pool: trust score, selection, lifecycle, health."""

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
    chip_migration_notice_window_h: float = Field(
        default=24, ge=0,
        description="A doctor gets at most one 'new number' message in this many hours.",
    )  # fmt: skip
    chip_migration_texto: str = Field(
        default="Oi! Aqui é a Júlia. A partir de agora falo com você por este número, "
        "tudo bem? Seguimos de onde paramos.",
        description="Continuation message sent from the new chip after a migration.",
    )
