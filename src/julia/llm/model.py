"""The model port and its Anthropic adapter.

    model = anthropic_model(app)
    response = await model.create(Request(system=..., tools=[...], messages=[...]))

The adapter, for every call: refuses when the day's token budget is spent (the first
refusal of a day raises the ``llm.budget`` alert), answers an identical request from
a short-lived cache (a redelivered turn does not pay twice; every hit logged and
counted), goes through the ``anthropic`` breaker, marks the stable prefix (system
prompt and tools) for prompt caching, and records latency, outcome and tokens.
Any failure is one :class:`ModelError` with a ``kind``.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

import anthropic

from julia.core import metrics
from julia.core.app import App
from julia.core.errors import CircuitOpen, JuliaError
from julia.core.logs import get_logger
from julia.llm import client as llm_client
from julia.notify import alerts
from julia.resilience.breaker import breakers

log = get_logger(__name__)

ErrorKind = Literal["unavailable", "timeout", "budget", "malformed", "status", "network"]
CACHE = {"type": "ephemeral"}


class ModelError(JuliaError):
    """The model could not answer (the turn falls back)."""

    exit_code = 69
    http_status = 503

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message, kind=kind)
        self.kind = kind


@dataclass(frozen=True)
class Request:
    system: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] = field(default_factory=list)
    model: str | None = None
    max_tokens: int | None = None
    #: ``{"type": "none"}`` on the last iteration: words only, no more tools.
    tool_choice: dict[str, Any] | None = None
    timeout_s: float | None = None


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0

    @property
    def total(self) -> int:
        return (self.input_tokens + self.output_tokens + self.cache_read_input_tokens
                + self.cache_creation_input_tokens)  # fmt: skip

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def astuple(u: Usage) -> tuple[int, int, int, int]:
    return (u.input_tokens, u.output_tokens, u.cache_read_input_tokens,
            u.cache_creation_input_tokens)  # fmt: skip


@dataclass(frozen=True)
class Response:
    content: list[dict[str, Any]]
    stop_reason: str | None
    usage: Usage
    model: str
    cached: bool = False
    latency_s: float = 0.0

    @property
    def text(self) -> str:
        return "".join(b.get("text", "") for b in self.content if b.get("type") == "text")

    @property
    def tool_uses(self) -> list[dict[str, Any]]:
        return [b for b in self.content if b.get("type") == "tool_use"]


class Model(Protocol):
    """What the agent needs of a model: one call."""

    async def create(self, request: Request) -> Response: ...


def _marked(request: Request) -> dict[str, Any]:
    """The request body, the stable prefix marked for prompt caching."""
    tools = [dict(t) for t in request.tools]
    if tools:
        tools[-1] = {**tools[-1], "cache_control": CACHE}
    body: dict[str, Any] = {
        "system": [{"type": "text", "text": request.system, "cache_control": CACHE}],
        "messages": request.messages,
    }
    if tools:
        body["tools"] = tools
    if request.tool_choice is not None and tools:
        body["tool_choice"] = request.tool_choice
    return body


def cache_key(model: str, body: dict[str, Any], max_tokens: int) -> str:
    raw = json.dumps([model, max_tokens, body], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


def _day(app: App) -> str:
    return app.clock.now().date().isoformat()


async def spent_today(app: App) -> int:
    raw = await app.redis.get(app.keys.key("llm", "tokens", _day(app)))
    return int(raw or 0)


class AnthropicModel:
    """:class:`Model` over the official SDK (or the sandbox model at the base URL)."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def create(self, request: Request) -> Response:
        app, s = self.app, self.app.settings
        model = request.model or s.llm_model
        max_tokens = request.max_tokens or s.llm_max_tokens
        body = _marked(request)
        await self._check_budget(model)
        key = app.keys.key("llm", "cache", cache_key(model, body, max_tokens))
        if s.llm_cache_ttl_s > 0:
            hit = await app.redis.get(key)
            if hit is not None:
                data = json.loads(hit)
                metrics.LLM_CALLS.labels(model, "cache_hit").inc()
                log.info("llm.cache_hit", model=model, key=key[-12:])
                return Response(data["content"], data["stop_reason"], Usage(), model, cached=True)
        started = time.perf_counter()
        try:
            async with breakers(app).get("anthropic").guard():
                raw = await llm_client.client(app).messages.create(
                    model=model,
                    max_tokens=max_tokens,
                    timeout=min(s.llm_timeout_s, request.timeout_s or s.llm_timeout_s),
                    **body,
                )
        except CircuitOpen as exc:
            metrics.LLM_CALLS.labels(model, "circuit_open").inc()
            raise ModelError("unavailable", str(exc)) from exc
        except anthropic.APITimeoutError as exc:
            metrics.LLM_CALLS.labels(model, "timeout").inc()
            raise ModelError("timeout", "the model did not answer in time") from exc
        except anthropic.APIStatusError as exc:
            metrics.LLM_CALLS.labels(model, f"http_{exc.status_code}").inc()
            raise ModelError("status", f"model answered {exc.status_code}") from exc
        except anthropic.APIConnectionError as exc:
            metrics.LLM_CALLS.labels(model, "network").inc()
            raise ModelError("network", "cannot reach the model") from exc
        except (anthropic.APIResponseValidationError, ValueError) as exc:
            metrics.LLM_CALLS.labels(model, "malformed").inc()
            raise ModelError("malformed", "the model's answer could not be read") from exc
        latency = time.perf_counter() - started
        metrics.LLM_LATENCY.labels(model).observe(latency)
        content = [b.model_dump(exclude_none=True) for b in raw.content]
        u = raw.usage
        usage = Usage(
            u.input_tokens or 0,
            u.output_tokens or 0,
            getattr(u, "cache_read_input_tokens", None) or 0,
            getattr(u, "cache_creation_input_tokens", None) or 0,
        )
        response = Response(content, raw.stop_reason, usage, model, latency_s=latency)
        await self._record(model, response, key)
        return response

    async def _check_budget(self, model: str) -> None:
        app = self.app
        budget = app.settings.llm_daily_token_budget
        if budget <= 0 or await spent_today(app) < budget:
            return
        metrics.LLM_CALLS.labels(model, "budget").inc()
        first = await app.redis.set(
            app.keys.key("llm", "budget_alert", _day(app)), "1", nx=True, ex=2 * 86400
        )
        if first:
            await alerts.raise_alert(
                app, "llm.budget",
                f"the daily model token budget ({budget}) is spent: turns get the fallback"
                " reply until tomorrow (JULIA_LLM_DAILY_TOKEN_BUDGET)",
                details={"budget": budget, "day": _day(app)},
            )  # fmt: skip
        raise ModelError("budget", "daily token budget spent")

    async def _record(self, model: str, response: Response, key: str) -> None:
        app, u = self.app, response.usage
        metrics.LLM_CALLS.labels(model, "ok").inc()
        for kind, n in (("input", u.input_tokens), ("output", u.output_tokens),
                        ("cache_read", u.cache_read_input_tokens),
                        ("cache_write", u.cache_creation_input_tokens)):  # fmt: skip
            if n:
                metrics.LLM_TOKENS.labels(model, kind).inc(n)
        pipe = app.redis.pipeline(transaction=False)
        day_key = app.keys.key("llm", "tokens", _day(app))
        pipe.incrby(day_key, u.total)
        pipe.expire(day_key, 3 * 86400)
        if app.settings.llm_cache_ttl_s > 0:
            data = {"content": response.content, "stop_reason": response.stop_reason}
            pipe.set(key, json.dumps(data), ex=int(app.settings.llm_cache_ttl_s) or 1)
        await pipe.execute()


def anthropic_model(app: App) -> Model:
    """The App's model: one registered in ``app.extensions["llm_model"]`` or the adapter."""
    found = app.extensions.get("llm_model")
    if found is None:
        found = app.extensions["llm_model"] = AnthropicModel(app)
    return found
