"""Inbound: the shim's webhooks, the inbox, the processors, media.
Composed into :class:`julia.settings.Settings`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings


class InboxSettings(BaseSettings):
    """Inbound: the shim's webhooks, the inbox, the processors, media."""

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
    webhook_jwt_max_lifetime_s: int = Field(
        default=3600,
        ge=1,
        description="Longest lifetime (exp minus now, and minus iat) of a webhook Bearer JWT.",
    )
    webhook_max_body_bytes: int = Field(
        default=5_000_000, ge=1024, description="Largest webhook body accepted (bigger is 413)."
    )
    webhook_max_header_bytes: int = Field(
        default=16_384, ge=1024, description="Largest total size of a request's headers (431)."
    )
    webhook_max_headers: int = Field(
        default=100, ge=8, description="Most headers one request may carry (more is 431)."
    )
    webhook_read_timeout_s: float = Field(
        default=10.0, gt=0, description="A webhook body must arrive whole within this (408)."
    )
    webhook_store_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="A webhook not stored within this is answered 503 (the gateway retries).",
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
