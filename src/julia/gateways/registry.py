"""The App's gateway adapters, built from settings on first use (``app.extensions``)."""

from __future__ import annotations

from julia.core.app import App
from julia.core.errors import ConfigError
from julia.core.settings import secret
from julia.gateways.base import Gateway
from julia.gateways.evolution import EvolutionGateway
from julia.gateways.zapi import ZApiGateway


def gateway(app: App, provider: str) -> Gateway:
    """The adapter for ``provider`` (``evolution`` or ``zapi``) over the shared HTTP client."""
    cache: dict[str, Gateway] = app.extensions.setdefault("gateways", {})
    if provider not in cache:
        s = app.settings
        if provider == "evolution":
            cache[provider] = EvolutionGateway(
                app.http, s.evolution_url, secret(s.evolution_api_key),
                timeout_s=s.http_read_timeout_s,
            )  # fmt: skip
        elif provider == "zapi":
            cache[provider] = ZApiGateway(
                app.http, s.zapi_url, {s.zapi_instance: secret(s.zapi_token) or ""},
                secret(s.zapi_client_token), timeout_s=s.http_read_timeout_s,
            )  # fmt: skip
        else:
            raise ConfigError(f"JULIA_GATEWAY_PROVIDER {provider!r}: use evolution or zapi")
    return cache[provider]


def default_gateway(app: App) -> Gateway:
    """The gateway of the single default instance (``JULIA_GATEWAY_PROVIDER``)."""
    return gateway(app, app.settings.gateway_provider)
