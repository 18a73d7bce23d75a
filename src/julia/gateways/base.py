"""The WhatsApp gateway port, and the one place HTTP failures become typed errors.

A gateway hosts instances (chips) and offers: send text, send presence
(typing), mark as read, connection state, list instances, check which numbers
are on WhatsApp, and (where it keeps one) the history of what it sent, used to
reconcile messages whose outcome is unknown. Adapters: :mod:`.evolution` (also
spoken by the sandbox gateway) and :mod:`.zapi`.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
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
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        raise GatewayRateLimited(text, status=status, retry_after_s=retry_after)
    else:
        kind = GatewayClientError
    raise kind(text, status=status)


#: The longest wait a gateway's ``Retry-After`` may impose (longer ones are capped).
RETRY_AFTER_MAX_S = 3600.0


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP-date
    (RFC 9110), capped at :data:`RETRY_AFTER_MAX_S`; None when absent or unreadable.
    Never raises: a gateway's header is outside input (``1e12``, ``inf``, junk)."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            at = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        seconds = (at - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_MAX_S)


def send_deadline_s(timeout_s: float) -> float:
    """The hard end of one gateway call: connect (≤ 5 s) plus the read timeout. After it,
    our side has certainly given up (:class:`HttpGateway` enforces it)."""
    return min(5.0, timeout_s) + timeout_s


class HttpGateway:
    """What the HTTP adapters share: the pooled client, headers, timeouts, and ``_request``
    (the one place an HTTP call becomes a typed answer or a :class:`GatewayError`)."""

    provider = "http"

    def __init__(
        self, http: httpx.AsyncClient, base_url: str, headers: dict[str, str], timeout_s: float
    ) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.headers = headers
        self.timeout = httpx.Timeout(timeout_s, connect=min(5.0, timeout_s))
        self.deadline_s = send_deadline_s(timeout_s)

    async def _request(
        self, method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Any:
        with wrap_gateway_errors(self.provider):
            try:
                async with asyncio.timeout(self.deadline_s):  # a slow drip ends here too
                    response = await self.http.request(
                        method, url, json=body, headers=headers or self.headers,
                        timeout=self.timeout,
                    )  # fmt: skip
            except TimeoutError as exc:
                raise GatewayTimeout(
                    f"{self.provider} did not answer within {self.deadline_s:g} s",
                    maybe_sent=True,
                ) from exc
            raise_for_response(response, self.provider)
            return response.json() if response.content else None


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
