"""Guardrails: who may be contacted now, and LGPD erasure.
Composed into :class:`julia.settings.Settings`."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings


class GuardrailsSettings(BaseSettings):
    """Guardrails: who may be contacted now, and LGPD erasure."""

    guardrails_contact_cap_days: float = Field(
        default=7.0, gt=0,
        description="No campaign or prospecting message to a doctor sent any message within"
        " this many days (turned off by the app_settings key guardrails.contact_cap).",
    )  # fmt: skip
    guardrails_forget_pepper: SecretStr = Field(
        default=SecretStr("julia-lgpd"),
        description="Key of the hash kept of a forgotten doctor's phone (HMAC-SHA256).",
    )
