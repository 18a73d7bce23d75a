"""The Slack sandbox: an HTTP server that answers like a Slack incoming webhook.

    julia sandbox slack --port 8090
    JULIA_SLACK_WEBHOOK_URL=http://127.0.0.1:8090/services/T000/B000/XXXX

Like Slack, ``POST /services/...`` (or ``POST /``) takes a JSON body with ``text``
and/or ``blocks`` and answers ``200 ok`` (``400 invalid_payload`` for a body that is
not JSON, ``400 no_text`` without text or blocks). Test controls under ``/_sandbox``:

- ``GET /_sandbox/messages``: every accepted message (``id, path, text, blocks, time``);
  ``DELETE`` clears them.
- ``GET /_sandbox/stats``: ``{"received": N, "accepted": M}`` (received counts refused
  attempts too, so a test can see the retries).
- ``POST /_sandbox/faults`` ``{"status": 500, "error_rate": 1.0, "latency_ms": 0}``
  (fields optional; a 429 carries ``Retry-After: 1``); ``DELETE`` clears.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from julia.sandbox import server


@dataclass
class Fault:
    status: int = 500
    error_rate: float = 1.0
    latency_ms: int = 0


@dataclass
class SlackState:
    messages: list[dict[str, Any]] = field(default_factory=list)
    received: int = 0
    fault: Fault | None = None
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))


def create_app() -> Starlette:
    """The sandbox as an ASGI app; its state is ``app.state.slack``."""
    state = SlackState()

    async def webhook(request: Request) -> Response:
        state.received += 1
        fault = state.fault
        if fault is not None:
            if fault.latency_ms:
                await asyncio.sleep(fault.latency_ms / 1000)
            if random.random() < fault.error_rate:
                headers = {"Retry-After": "1"} if fault.status == 429 else None
                return PlainTextResponse("fault_injected", fault.status, headers=headers)
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return PlainTextResponse("invalid_payload", 400)
        if not isinstance(body, dict) or not (body.get("text") or body.get("blocks")):
            return PlainTextResponse("no_text", 400)
        state.messages.append({
            "id": next(state.ids), "path": request.url.path, "text": body.get("text"),
            "blocks": body.get("blocks"), "time": datetime.now(UTC).isoformat(),
        })  # fmt: skip
        return PlainTextResponse("ok")

    async def messages(request: Request) -> Response:
        if request.method == "DELETE":
            state.messages.clear()
            state.received = 0
            return JSONResponse({"cleared": True})
        return JSONResponse(state.messages)

    async def stats(_: Request) -> Response:
        return JSONResponse({"received": state.received, "accepted": len(state.messages)})

    async def faults(request: Request) -> Response:
        if request.method == "DELETE":
            state.fault = None
            return JSONResponse({"fault": None})
        try:
            body = json.loads(await request.body() or b"{}")
            state.fault = Fault(
                status=int(body.get("status", 500)),
                error_rate=float(body.get("error_rate", 1.0)),
                latency_ms=int(body.get("latency_ms", 0)),
            )
        except (ValueError, TypeError, AttributeError):
            return JSONResponse({"error": "expected {status, error_rate, latency_ms}"}, 400)
        return JSONResponse({"fault": state.fault.__dict__})

    app = Starlette(
        routes=[
            Route("/", webhook, methods=["POST"]),
            Route("/services/{rest:path}", webhook, methods=["POST"]),
            Route("/_sandbox/messages", messages, methods=["GET", "DELETE"]),
            Route("/_sandbox/stats", stats, methods=["GET"]),
            Route("/_sandbox/faults", faults, methods=["POST", "DELETE"]),
        ]
    )
    app.state.slack = state
    return app


def serve(*, host: str = "127.0.0.1", port: int = 8090) -> None:
    """Run the Slack sandbox until interrupted (blocking)."""
    server.serve(create_app(), host, port)


@contextmanager
def running(*, host: str = "127.0.0.1", port: int = 0) -> Iterator[tuple[str, SlackState]]:
    """Run the sandbox in a background thread; yields ``(webhook_url, state)``."""
    app = create_app()
    with server.in_thread(app, host, port, "Slack sandbox") as bound:
        yield f"http://{host}:{bound}/services/T000/B000/sandbox", app.state.slack
