"""Webhook authentication: a shared token, Evolution's Bearer JWT, Chatwoot's HMAC.

Evolution and Z-API do not sign webhooks. With ``JULIA_WEBHOOK_TOKEN`` set, each
request must carry the token in ``X-Webhook-Token`` or as ``Authorization: Bearer
<JWT>``, the HS256 token Evolution builds when its webhook headers hold
``jwt_key`` (payload ``{iat, exp: iat+600, app: 'evolution', action: 'webhook'}``).
Chatwoot signs ``f"{timestamp}.{raw_body}"`` with HMAC-SHA256
(``X-Chatwoot-Signature: sha256=<hex>`` + ``X-Chatwoot-Timestamp``). Every comparison
is constant-time. A JWT living longer than ``JULIA_WEBHOOK_JWT_MAX_LIFETIME_S`` is
refused (a leaked token must not work for years). The Chatwoot timestamp is at most
12 ASCII digits; anything else is a 401, never an exception.
"""

from __future__ import annotations

import hashlib
import hmac
import warnings
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

import jwt

from julia.core.errors import WebhookUnauthorized
from julia.core.phones import ascii_digits
from julia.core.settings import secret as reveal

if TYPE_CHECKING:
    from julia.settings import Settings


#: The shim's webhook routes and the setting that secures each (Evolution and Z-API
#: share the webhook token).
ROUTE_SECRETS = {
    "/webhooks/evolution": "webhook_token",
    "/webhooks/zapi": "webhook_token",
    "/webhooks/chatwoot": "chatwoot_webhook_secret",
}


def unsecured_routes(settings: Settings) -> list[str]:
    """The webhook routes that accept unauthenticated posts under ``settings``."""
    return [r for r, knob in ROUTE_SECRETS.items() if not reveal(getattr(settings, knob))]


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def verify_gateway(settings: Settings, headers: Mapping[str, str], now: datetime) -> None:
    """Raise :class:`WebhookUnauthorized` unless the request carries the webhook token."""
    token = reveal(settings.webhook_token)
    if not token:
        return
    given = headers.get("x-webhook-token")
    if given is not None and _same(given, token):
        return
    auth = headers.get("authorization", "")
    scheme, _, credentials = auth.partition(" ")
    if scheme.lower() == "bearer" and credentials:
        if _same(credentials.strip(), token):
            return
        if _valid_jwt(credentials.strip(), token, now, settings.webhook_jwt_max_lifetime_s):
            return
    raise WebhookUnauthorized("missing or wrong webhook token")


def _valid_jwt(encoded: str, key: str, now: datetime, max_lifetime_s: int) -> bool:
    try:
        with warnings.catch_warnings():  # a short key is the operator's choice, not per request
            warnings.simplefilter("ignore")
            claims = jwt.decode(
                encoded,
                key,
                algorithms=["HS256"],
                options={"require": ["exp"], "verify_exp": False},
            )
    except jwt.PyJWTError:
        return False
    exp, iat = _number(claims.get("exp")), _number(claims.get("iat"))
    if exp is None or not now.timestamp() < exp <= now.timestamp() + max_lifetime_s:
        return False
    if "iat" in claims:
        return iat is not None and exp - iat <= max_lifetime_s
    return True


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def chatwoot_signature(secret: str, timestamp: str, raw: bytes) -> str:
    """The ``X-Chatwoot-Signature`` value for a body (also used by the sandbox and tests)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + raw, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_chatwoot(
    settings: Settings, headers: Mapping[str, str], raw: bytes, now: datetime
) -> None:
    """Raise :class:`WebhookUnauthorized` unless a configured Chatwoot signature matches."""
    secret = reveal(settings.chatwoot_webhook_secret)
    if not secret:
        return
    signature = headers.get("x-chatwoot-signature", "")
    timestamp = headers.get("x-chatwoot-timestamp", "")
    if not signature or not ascii_digits(timestamp, max_len=12):
        raise WebhookUnauthorized("missing Chatwoot signature")
    if abs(now.timestamp() - int(timestamp)) > settings.chatwoot_webhook_tolerance_s:
        raise WebhookUnauthorized("stale Chatwoot signature timestamp")
    if not _same(signature, chatwoot_signature(secret, timestamp, raw)):
        raise WebhookUnauthorized("wrong Chatwoot signature")
