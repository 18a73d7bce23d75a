"""The WhatsApp gateways: Evolution API and Z-API, and the default instance.
Composed into :class:`julia.settings.Settings`."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings


class GatewaySettings(BaseSettings):
    """The WhatsApp gateways: Evolution API and Z-API, and the default instance."""

    gateway_provider: str = Field(
        default="evolution", description="Gateway of the default instance: evolution or zapi."
    )
    evolution_url: str = Field(
        default="http://127.0.0.1:8081",
        description="Evolution API v2 base URL (default: where `julia sandbox gateway` listens).",
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
