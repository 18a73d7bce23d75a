"""Human handoff and the Chatwoot Application API. Composed into :class:`julia.settings.Settings`.

(``JULIA_CHATWOOT_WEBHOOK_SECRET`` stays with the inbox, which verifies the webhooks.)
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings


class HandoffSettings(BaseSettings):
    """Human handoff and the Chatwoot Application API."""

    chatwoot_url: str | None = Field(
        default=None,
        description="Chatwoot base URL (https://chatwoot.example); unset: no Chatwoot.",
    )
    chatwoot_api_token: SecretStr | None = Field(
        default=None,
        description="A Chatwoot user's api_access_token (contacts and labels need one).",
    )
    chatwoot_account_id: int | None = Field(default=None, description="Chatwoot account id.")
    chatwoot_inbox_id: int | None = Field(
        default=None, description="The Chatwoot API-channel inbox handoffs are opened in."
    )
    chatwoot_timeout_s: float = Field(
        default=10.0, gt=0, description="Timeout of one Chatwoot API call, in seconds."
    )
    handoff_label: str = Field(
        default="humano", description="Chatwoot label of a conversation a person handles."
    )
    handoff_negative_words: str = Field(
        default="absurdo,ridiculo,palhacada,pessimo,horrivel,desrespeito,vergonha,"
        "incompetente,nunca mais,to puto,que raiva,me enganaram",
        description="Comma-separated words of strong negative sentiment (accents ignored):"
        " one in a doctor's message hands the conversation to a person.",
    )
    handoff_notify_attempts: int = Field(
        default=3, ge=1, description="Attempts of each Chatwoot call of a handoff notification."
    )
    handoff_history_limit: int = Field(
        default=30, ge=1, description="Last messages posted to Chatwoot (and digested) on handoff."
    )
    handoff_waiting_min: float = Field(
        default=10.0,
        gt=0,
        description="A handoff nobody picked up for this long raises handoff.waiting.",
    )
    handoff_waiting_interval_s: float = Field(
        default=60.0, gt=0, description="How often the handoff_waiting job runs."
    )
    handoff_webhook_settle_s: float = Field(
        default=1.5,
        ge=0,
        description="A Chatwoot webhook is acted on after this many seconds"
        " (so the echo of a message Júlia posted is known as hers).",
    )
    handoff_poll_s: float = Field(
        default=1.0, gt=0, description="Idle wait of the handoff consumer between polls."
    )
