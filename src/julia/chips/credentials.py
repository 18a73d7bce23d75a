"""Each Z-API chip's own credentials: its instance token and Client-Token.

Stored in ``chip_credenciais`` (apart from ``chips``: no listing selects them), held in
memory as :class:`pydantic.SecretStr`, revealed only to build the gateway URL and
header. An Evolution chip needs none (the Evolution API key is the server's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from julia.core.app import App
from julia.core.errors import InvalidInput
from julia.core.settings import secret
from julia.gateways import registry
from julia.gateways.base import Gateway
from julia.gateways.zapi import ZApiGateway


@dataclass(frozen=True)
class Credentials:
    token: SecretStr
    client_token: SecretStr | None = None


def of(token: str | SecretStr | None, client_token: str | SecretStr | None) -> Credentials | None:
    """Credentials from what an operator typed (None when no token was given)."""
    t = secret(token) if isinstance(token, SecretStr) else token
    c = secret(client_token) if isinstance(client_token, SecretStr) else client_token
    if not t or not t.strip():
        if c:
            raise InvalidInput("a Z-API Client-Token needs the instance token too (--zapi-token)")
        return None
    return Credentials(SecretStr(t.strip()), SecretStr(c.strip()) if c and c.strip() else None)


async def store(conn: Any, chip_id: int, creds: Credentials) -> None:
    await conn.execute(
        "INSERT INTO chip_credenciais (chip_id, token, client_token) VALUES (%s, %s, %s)"
        " ON CONFLICT (chip_id) DO UPDATE SET token = EXCLUDED.token,"
        " client_token = EXCLUDED.client_token, updated_at = now()",
        (chip_id, secret(creds.token), secret(creds.client_token)),
    )


def forget(app: App) -> None:
    """After credentials change: the gateway re-reads them on the next send."""
    app.extensions.pop(_KEY, None)


_KEY = "chips.zapi_registered"


async def gateway_for(app: App, chip_id: int, provider: str, instance: str) -> Gateway:
    """The gateway that sends for this chip; a Z-API chip's own credentials registered
    in it (read from Postgres once per process, or after :func:`forget`)."""
    gateway = registry.gateway(app, provider)
    if not isinstance(gateway, ZApiGateway):
        return gateway
    registered: set[int] = app.extensions.setdefault(_KEY, set())
    if chip_id not in registered:
        async with app.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT token, client_token FROM chip_credenciais WHERE chip_id = %s", (chip_id,)
            )
            row = await cur.fetchone()
        if row is not None:
            gateway.register(instance, row["token"], row["client_token"])
        registered.add(chip_id)
    return gateway
