"""The App's gateway adapters, built from settings on first use (``app.extensions``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from julia.core.app import App
from julia.core.errors import ConfigError
from julia.core.settings import secret
from julia.gateways import base
from julia.gateways.base import Gateway
from julia.gateways.evolution import EvolutionGateway
from julia.gateways.zapi import ZApiGateway

if TYPE_CHECKING:  # the session is julia.gateways.base's; only it speaks aiohttp
    import aiohttp


def session(app: App) -> aiohttp.ClientSession:
    """The App's pooled session for the gateways (``JULIA_HTTP_MAX_CONNECTIONS``), opened
    on first use and closed with the App."""
    http: aiohttp.ClientSession | None = app.extensions.get("gateways.session")
    if http is None:
        http = app.extensions["gateways.session"] = base.session(app.settings.http_max_connections)
        app.extensions.setdefault("on_close", []).append(http.close)
    return http


def gateway(app: App, provider: str) -> Gateway:
    """The adapter for ``provider`` (``evolution`` or ``zapi``) over the gateways' session."""
    cache: dict[str, Gateway] = app.extensions.setdefault("gateways", {})
    if provider not in cache:
        s = app.settings
        if provider == "evolution":
            cache[provider] = EvolutionGateway(
                session(app), s.evolution_url, secret(s.evolution_api_key),
                timeout_s=s.http_read_timeout_s,
            )  # fmt: skip
        elif provider == "zapi":
            cache[provider] = ZApiGateway(
                session(app), s.zapi_url, {s.zapi_instance: secret(s.zapi_token) or ""},
                secret(s.zapi_client_token), timeout_s=s.http_read_timeout_s,
            )  # fmt: skip
        else:
            raise ConfigError(f"JULIA_GATEWAY_PROVIDER {provider!r}: use evolution or zapi")
    return cache[provider]


def default_gateway(app: App) -> Gateway:
    """The gateway of the single default instance (``JULIA_GATEWAY_PROVIDER``)."""
    return gateway(app, app.settings.gateway_provider)
