"""The model client: key, endpoint, models, timeouts, the daily token budget, the cache.
Composed into :class:`julia.settings.Settings`."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings


class LLMSettings(BaseSettings):
    """The model client (Anthropic, or the sandbox model at ``JULIA_ANTHROPIC_BASE_URL``)."""

    anthropic_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "anthropic_api_key", "JULIA_ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY"
        ),
        description="Anthropic API key (JULIA_ANTHROPIC_API_KEY, or ANTHROPIC_API_KEY).",
    )
    anthropic_base_url: str | None = Field(
        default=None,
        description="Model endpoint; point it at `julia sandbox llm` to run without a key.",
    )
    llm_model: str = Field(default="claude-sonnet-4-6", description="Model that answers doctors.")
    llm_summary_model: str = Field(
        default="claude-haiku-4-5", description="Cheaper model that summarises long conversations."
    )
    llm_max_tokens: int = Field(default=800, ge=16, description="Max output tokens of one call.")
    llm_timeout_s: float = Field(default=30.0, gt=0, description="Timeout of one model request.")
    llm_connect_timeout_s: float = Field(
        default=5.0, gt=0, description="Connect timeout of one model request."
    )
    llm_max_retries: int = Field(
        default=2, ge=0, description="SDK retries of a model request (429/5xx, with backoff)."
    )
    llm_daily_token_budget: int = Field(
        default=2_000_000,
        ge=0,
        description="Tokens (input+output) all turns may spend per day; 0 means no limit.",
    )
    llm_cache_ttl_s: float = Field(
        default=300.0,
        ge=0,
        description="Model responses kept for an identical request (a redelivered turn); 0: off.",
    )
