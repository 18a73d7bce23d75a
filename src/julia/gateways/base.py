"""The WhatsApp gateway port, and the one place HTTP failures become typed errors.

A gateway hosts instances (chips) and offers: send text, send presence
(typing), mark as read, connection state, list instances, check which numbers
are on WhatsApp, and (where it keeps one) the history of what it sent, used to
reconcile messages whose outcome is unknown. Adapters: :mod:`.evolution` (also
spoken by the sandbox gateway) and :mod:`.zapi`.

The adapters speak HTTP through aiohttp, chosen by measurement for the send path
(``benchmarks/http_clients.py``: about a sixth of httpx's CPU per request); the rest of
Júlia (Slack, Chatwoot, the model SDK) keeps httpx. Only this module touches aiohttp.
"""

from __future__ import annotations

import asyncio
import json
import math
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp

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


@dataclass(frozen=True)
class Answer:
    """A gateway's HTTP answer, read whole: what :func:`raise_for_response` judges."""

    status: int
    headers: Mapping[str, str]
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


def raise_for_response(response: Answer, provider: str) -> None:
    """Map a non-2xx answer to the most specific :class:`GatewayError`."""
    status = response.status
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


def session(max_connections: int) -> aiohttp.ClientSession:
    """The gateways' pooled HTTP session: ``max_connections`` open at most, idle ones kept
    5 s (as the shared httpx client). Create it inside the running event loop and close it
    with the App. Proxies are the gateway's own (:func:`env_proxy`)."""
    connector = aiohttp.TCPConnector(limit=max_connections, limit_per_host=0, keepalive_timeout=5)
    return aiohttp.ClientSession(connector=connector)


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY``, ``NO_PROXY``...), as
    httpx honours them, read once per gateway: aiohttp's own lookup (``trust_env``) hops to
    a thread on every request."""
    proxies = urllib.request.getproxies_environment()
    parts = urlsplit(url)
    if parts.scheme not in proxies:
        return None
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxies[parts.scheme]


class HttpGateway:
    """What the HTTP adapters share: the pooled session, headers, timeouts, and ``_request``
    (the one place an HTTP call becomes a typed answer or a :class:`GatewayError`)."""

    provider = "http"

    def __init__(
        self, http: aiohttp.ClientSession, base_url: str, headers: dict[str, str], timeout_s: float
    ) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.headers = headers
        # connect covers waiting for a pooled connection too; sock_read is the read timeout
        self.timeout = aiohttp.ClientTimeout(
            total=None, connect=min(5.0, timeout_s), sock_read=timeout_s
        )
        self.deadline_s = send_deadline_s(timeout_s)
        self.proxy = env_proxy(self.base_url)

    async def _request(
        self, method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Any:
        with wrap_gateway_errors(self.provider, url, self.deadline_s):
            async with asyncio.timeout(self.deadline_s):  # a slow drip ends here too
                # a redirect is the gateway's answer, not an errand (httpx never followed one)
                async with self.http.request(
                    method, url, json=body, headers=headers or self.headers,
                    timeout=self.timeout, proxy=self.proxy, allow_redirects=False,
                ) as response:  # fmt: skip
                    answer = Answer(response.status, response.headers, await response.read())
            raise_for_response(answer, self.provider)
            return answer.json() if answer.content else None


@contextmanager
def wrap_gateway_errors(provider: str, url: str, deadline_s: float) -> Iterator[None]:
    """Turn transport failures into :class:`GatewayTimeout` / :class:`GatewayNetworkError`,
    saying whether the request may have reached the gateway (``maybe_sent``)."""
    try:
        yield
    except GatewayError:
        raise
    except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
        raise _gateway_error(exc, provider, url, deadline_s) from exc


def _gateway_error(exc: Exception, provider: str, url: str, deadline_s: float) -> GatewayError:
    """The typed error for a failed call, the most specific first (order matters: aiohttp's
    connect timeout is a ``TimeoutError``, its URL errors are ``ValueError``-s too)."""
    where = f"{provider} at {_origin(url)}"  # worked out only on failure: not on the hot path
    if isinstance(exc, aiohttp.ConnectionTimeoutError):  # no connection (pool, connect)
        return GatewayTimeout(f"{where} did not connect in time", maybe_sent=False)
    if isinstance(exc, TimeoutError):  # the read timeout, or the hard deadline: it may have gone
        return GatewayTimeout(
            f"{where} did not answer in time (deadline {deadline_s:g} s)", maybe_sent=True
        )
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):  # before connecting
        # not str(exc): it quotes the whole URL, a Z-API token with it
        return GatewayNetworkError(
            f"{where} unusable: {type(exc).__name__} (check the gateway's URL)", maybe_sent=False
        )
    if isinstance(exc, aiohttp.ClientConnectorError):  # refused, unreachable, DNS: never sent
        return GatewayNetworkError(
            f"{where} unreachable: {type(exc).__name__}: {exc.os_error}", maybe_sent=False
        )
    if isinstance(exc, aiohttp.ClientError):  # dropped or reset once the request was under way
        return GatewayNetworkError(f"{where} unreachable: {type(exc).__name__}", maybe_sent=True)
    # a 2xx whose body is not the JSON we expect: it was accepted
    return GatewayServerError(f"{provider} sent an unreadable answer: {exc}", maybe_sent=True)


def _origin(url: str) -> str:
    """Where the request went: scheme, host and port only (Z-API's path holds its token)."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        return "(a URL without scheme or host)"
    try:
        port = parts.port
    except ValueError:  # "host:80a": the port is junk, the host still says where
        port = None
    return f"{parts.scheme}://{parts.hostname}" + (f":{port}" if port else "")


def jid_number(jid: str) -> str:
    """``5511999998888@s.whatsapp.net`` → ``5511999998888``."""
    return jid.split("@", 1)[0].split(":", 1)[0]
