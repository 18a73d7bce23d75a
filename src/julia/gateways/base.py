"""The WhatsApp gateway port, and the one place HTTP failures become typed errors.

A gateway hosts instances (chips) and offers: send text, send presence
(typing), mark as read, connection state, list instances, check which numbers
are on WhatsApp, and (where it keeps one) the history of what it sent, used to
reconcile messages whose outcome is unknown. Adapters: :mod:`.evolution` (also
spoken by the sandbox gateway) and :mod:`.zapi`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import httpx

from julia.core.errors import (
    GatewayAuthError,
    GatewayBadRequest,
    GatewayClientError,
    GatewayError,
    GatewayForbidden,
    GatewayNetworkError,
    GatewayNotFound,
    GatewayRateLimited,
    GatewayServerError,
    GatewayTimeout,
    InvalidNumber,
)


@dataclass(frozen=True)
class SendResult:
    """What the gateway said about an accepted message."""

    provider_message_id: str
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class InstanceInfo:
    name: str
    state: str  # open | connecting | close | refused | unknown
    number: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class SentRecord:
    """One message in a gateway's history of what an instance sent."""

    provider_message_id: str
    number: str
    text: str
    at: datetime | None


class Gateway(Protocol):
    """What every WhatsApp gateway adapter offers. Numbers are digits only (``5511...``)."""

    provider: str

    async def send_text(
        self, instance: str, number: str, text: str, *, delay_ms: int | None = None
    ) -> SendResult: ...

    async def send_presence(
        self, instance: str, number: str, presence: str = "composing", delay_ms: int = 1000
    ) -> None: ...

    async def mark_read(
        self, instance: str, remote_jid: str, message_id: str, *, from_me: bool = False
    ) -> None: ...

    async def connection_state(self, instance: str) -> str: ...

    async def list_instances(self) -> list[InstanceInfo]: ...

    async def check_numbers(self, instance: str, numbers: list[str]) -> dict[str, bool]: ...

    async def find_sent(self, instance: str, number: str) -> list[SentRecord] | None:
        """What the instance sent to ``number``; None when the gateway keeps no history."""
        ...


def _message_of(body: Any) -> str:
    if isinstance(body, dict):
        inner = body.get("response", body)
        msg = inner.get("message", inner.get("error")) if isinstance(inner, dict) else inner
        return json.dumps(msg, ensure_ascii=False)[:300] if not isinstance(msg, str) else msg
    return str(body)[:300]


def _not_on_whatsapp(body: Any) -> bool:
    """Evolution's 400 for an unknown number carries ``[{"exists": false, ...}]``."""
    if not isinstance(body, dict):
        return False
    inner = body.get("response")
    msgs = inner.get("message") if isinstance(inner, dict) else None
    return isinstance(msgs, list) and any(
        isinstance(m, dict) and m.get("exists") is False for m in msgs
    )


def raise_for_response(response: httpx.Response, provider: str) -> None:
    """Map a non-2xx answer to the most specific :class:`GatewayError`."""
    status = response.status_code
    if status < 400:
        return
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    text = f"{provider} answered {status}: {_message_of(body)}"
    kind: type[GatewayError]
    if status >= 500:
        kind = GatewayServerError
    elif status == 400:
        kind = InvalidNumber if _not_on_whatsapp(body) else GatewayBadRequest
    elif status == 401:
        kind = GatewayAuthError
    elif status == 403:
        kind = GatewayForbidden
    elif status == 404:
        kind = GatewayNotFound
    elif status == 429:
        retry_after = response.headers.get("retry-after")
        raise GatewayRateLimited(
            text, status=status, retry_after_s=float(retry_after) if retry_after else None
        )
    else:
        kind = GatewayClientError
    raise kind(text, status=status)


@contextmanager
def wrap_gateway_errors(provider: str) -> Iterator[None]:
    """Turn httpx transport failures into :class:`GatewayTimeout` / :class:`GatewayNetworkError`."""
    try:
        yield
    except GatewayError:
        raise
    except httpx.TimeoutException as exc:
        raise GatewayTimeout(
            f"{provider} at {_origin(exc)} did not answer in time ({type(exc).__name__})",
            maybe_sent=not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout),
        ) from exc
    except httpx.TransportError as exc:
        raise GatewayNetworkError(
            f"{provider} at {_origin(exc)} unreachable: {type(exc).__name__}: {exc}",
            maybe_sent=not isinstance(exc, httpx.ConnectError),
        ) from exc
    except ValueError as exc:  # a 2xx whose body is not the JSON we expect: it was accepted
        raise GatewayServerError(
            f"{provider} sent an unreadable answer: {exc}", maybe_sent=True
        ) from exc


def _origin(exc: httpx.TransportError) -> str:
    """Where the request went: scheme, host and port only (Z-API's path holds its token)."""
    try:
        url = exc.request.url
    except RuntimeError:  # raised without a request
        return "(unknown URL)"
    return f"{url.scheme}://{url.host}" + (f":{url.port}" if url.port else "")


def jid_number(jid: str) -> str:
    """``5511999998888@s.whatsapp.net`` → ``5511999998888``."""
    return jid.split("@", 1)[0].split(":", 1)[0]
