"""The webhook shim: authenticate, limit, parse, store in the inbox, answer.

Every route does exactly that and nothing else: no LLM, gateway or Chatwoot call
happens inside a request. The business logic lives in :mod:`julia.inbox`.

Status codes: 200 stored or acknowledged (``{"status": "accepted"}`` or
``{"status": "ignored", "reason": ...}``), 400 malformed body, 401 wrong or missing
secret, 408 body not received within ``JULIA_WEBHOOK_READ_TIMEOUT_S``, 413 body over
``JULIA_WEBHOOK_MAX_BODY_BYTES``, 431 headers over ``JULIA_WEBHOOK_MAX_HEADER_BYTES`` or
``JULIA_WEBHOOK_MAX_HEADERS``, 503 storage unavailable (the gateway retries). Nothing a
sender posts produces a 500.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from julia import inbox
from julia.core import logs
from julia.core import metrics as julia_metrics
from julia.core.app import App
from julia.core.clock import Clock
from julia.core.errors import InvalidPayload, JuliaError, PayloadTooLarge, StorageError
from julia.inbox.auth import ROUTE_SECRETS, unsecured_routes
from julia.inbox.events import Event
from julia.ops import gauges
from julia.ops import health as julia_health
from julia.settings import Settings

log = logs.get_logger("shim")

Parser = Callable[[Request, Any, bytes], list[Event]]


class HeaderGuard:
    """431 for a request with too many headers or too many header bytes, before any route
    reads them (uvicorn's h11 limit, set by ``julia shim serve``, bounds what it buffers)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            limits: Settings = scope["app"].state.julia.settings
            headers = scope.get("headers") or []
            size = sum(len(k) + len(v) for k, v in headers)
            if len(headers) > limits.webhook_max_headers or size > limits.webhook_max_header_bytes:
                response = JSONResponse(
                    {"status": "error", "reason": "request headers too large"}, status_code=431
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def read_body(request: Request, limit: int, timeout_s: float | None = None) -> bytes:
    """The body, or :class:`PayloadTooLarge` as soon as it passes ``limit`` bytes;
    :class:`InvalidPayload` (408) when it has not arrived whole within ``timeout_s``."""
    if timeout_s is None:
        return await _read_body(request, limit)
    try:
        async with asyncio.timeout(timeout_s):
            return await _read_body(request, limit)
    except TimeoutError:
        raise BodyTimeout(f"body not received within {timeout_s:g} s") from None


class BodyTimeout(InvalidPayload):
    http_status = 408


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit():
        if int(declared) > limit:
            raise PayloadTooLarge(f"body over {limit} bytes")
        return await request.body()  # the server holds the body to its declared length
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _evolution(request: Request, body: Any, raw: bytes) -> list[Event]:
    events: list[Event] = inbox.parse_evolution(body, request.path_params.get("event"))
    return events


def _zapi(request: Request, body: Any, raw: bytes) -> list[Event]:
    events: list[Event] = inbox.parse_zapi(body)
    return events


def _chatwoot(request: Request, body: Any, raw: bytes) -> list[Event]:
    events: list[Event] = inbox.parse_chatwoot(
        body, raw, request.headers.get("x-chatwoot-delivery")
    )
    return events


async def _store(julia: App, events: list[Event], text: str) -> inbox.AcceptResult:
    """:func:`inbox.accept` under a deadline: a Postgres that accepts connections but
    does not answer makes a 503 within seconds, well before the gateway gives up."""
    deadline = julia.settings.webhook_store_timeout_s
    try:
        async with asyncio.timeout(deadline):
            result: inbox.AcceptResult = await inbox.accept(julia, events, text)
            return result
    except TimeoutError:
        raise StorageError(f"storage did not answer within {deadline:g} s") from None


def _error(exc: JuliaError) -> JSONResponse:
    status = exc.http_status if 400 <= exc.http_status < 500 else 503
    return JSONResponse({"status": "error", "reason": exc.message}, status_code=status)


def webhook_route(provider: str, parse: Parser) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        # One trace per request: stored with its messages and carried on to the turn
        # and the replies they make; answered in X-Trace-Id for the sender's logs.
        started = time.perf_counter()
        with logs.traced() as trace_id:
            response, events, outcome = await _handle(request, provider, parse)
        response.headers["X-Trace-Id"] = trace_id
        julia_metrics.count_webhook(provider, events, outcome, time.perf_counter() - started)
        return response

    return endpoint


async def _handle(
    request: Request, provider: str, parse: Parser
) -> tuple[Response, list[Event], str]:
    """The response, the events parsed (none when rejected before) and the outcome."""
    julia: App = request.app.state.julia
    stage = "auth"
    events: list[Event] = []
    max_body = julia.settings.webhook_max_body_bytes
    read_timeout = julia.settings.webhook_read_timeout_s
    try:
        headers = request.headers
        if provider == "chatwoot":
            raw = await read_body(request, max_body, read_timeout)
            inbox.verify_chatwoot(julia.settings, headers, raw, julia.clock.now())
        else:
            inbox.verify_gateway(julia.settings, headers, julia.clock.now())
            raw = await read_body(request, max_body, read_timeout)
        stage = "parse"
        body, text = inbox.decode_body(raw)
        events = parse(request, body, raw)
        stage = "store"
        result = await _store(julia, events, text)
    except JuliaError as exc:
        response = _error(exc)
        log.warning(
            "webhook.rejected",
            provider=provider,
            stage=stage,
            http_status=response.status_code,
            error=type(exc).__name__,
            reason=exc.message,
        )
    except Exception as exc:  # never a 500: a parse bug is 400, anything else 503
        status = 400 if stage == "parse" else 503
        log.error("webhook.failed", provider=provider, stage=stage, error=type(exc).__name__)
        response = JSONResponse(
            {"status": "error", "reason": "unprocessable payload" if status == 400
             else "temporarily unavailable"},
            status_code=status,
        )  # fmt: skip
    else:
        # One line per accepted webhook, under its trace id: a trace is followed from here
        # to the turn and the send (docs/operations.md).
        log.info(
            "webhook.accepted", provider=provider, status=result.status, reason=result.reason,
            events=len(events), stored=result.stored, duplicates=result.duplicates,
        )  # fmt: skip
        return JSONResponse(result.as_dict()), events, result.reason or result.status
    return response, events, str(response.status_code)


async def health(request: Request) -> Response:
    return JSONResponse(julia_health.liveness())


async def ready(request: Request) -> Response:
    """200 when Postgres and Redis both answer within 2 s, else 503 naming what failed
    (:func:`julia.ops.health.readiness`)."""
    result = await julia_health.readiness(request.app.state.julia)
    return JSONResponse(result.as_dict(), status_code=200 if result.ok else 503)


async def metrics_endpoint(request: Request) -> Response:
    """Every metric of :mod:`julia.core.metrics` (webhooks by event and outcome among them)."""
    body = await gauges.render(request.app.state.julia)
    return Response(body, media_type=julia_metrics.CONTENT_TYPE)


def create_app(
    settings: Settings | None = None, *, clock: Clock | None = None, julia: App | None = None
) -> Starlette:
    """The shim as an ASGI app. Pass ``julia`` to reuse an opened App (tests);
    otherwise the lifespan opens one from ``settings`` and closes it at shutdown."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if julia is not None:
            yield
            return
        effective = settings or Settings()
        logs.configure(effective.log_level, effective.log_format)
        async with App.open(effective, clock=clock) as opened:
            app.state.julia = opened
            for route in unsecured_routes(effective):  # once per route, at start
                knob = ROUTE_SECRETS[route].upper()
                log.warning("shim.unauthenticated", route=route, reason=f"JULIA_{knob} is not set")
            yield

    routes = [
        Route("/webhooks/evolution", webhook_route("evolution", _evolution), methods=["POST"]),
        Route(
            "/webhooks/evolution/{event}", webhook_route("evolution", _evolution), methods=["POST"]
        ),
        Route("/webhooks/zapi", webhook_route("zapi", _zapi), methods=["POST"]),
        Route("/webhooks/zapi/{event}", webhook_route("zapi", _zapi), methods=["POST"]),
        Route("/webhooks/chatwoot", webhook_route("chatwoot", _chatwoot), methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/health/ready", ready, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    if julia is not None:
        app.state.julia = julia
    app.add_middleware(HeaderGuard)  # type: ignore[arg-type]
    return app


def app_from_env() -> Starlette:
    """Factory for ``uvicorn --factory shim.app:app_from_env``."""
    return create_app()


#: The ASGI app for any server (``uvicorn shim.app:app``); settings from the environment.
app = create_app()
