"""The tool registry: one decorator declares a tool (name, description, pydantic input
model, side effect or not); the model sees the generated JSON schemas.

Whatever goes wrong in a tool (unknown name, invalid input, a refusal, a crash) goes
back to the model as an ``is_error`` tool result, never as an exception to the doctor.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from julia.core import metrics
from julia.core.logs import get_logger

if TYPE_CHECKING:
    from julia.agent.state import ToolContext

log = get_logger(__name__)

ToolFn = Callable[["ToolContext", Any], Awaitable[dict[str, Any]]]


class ToolFailure(Exception):
    """A tool's refusal, told to the model (``extra`` joins the error's JSON)."""

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.extra = extra


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    input_model: type[BaseModel]
    side_effect: bool
    fn: ToolFn

    def schema(self) -> dict[str, Any]:
        schema = self.input_model.model_json_schema()
        schema.pop("title", None)
        return {"name": self.name, "description": self.description, "input_schema": schema}


@dataclass(frozen=True)
class ToolResult:
    tool_use_id: str
    name: str
    content: dict[str, Any]
    is_error: bool
    side_effect: bool

    def block(self) -> dict[str, Any]:
        block: dict[str, Any] = {
            "type": "tool_result",
            "tool_use_id": self.tool_use_id,
            "content": json.dumps(self.content, ensure_ascii=False, default=str),
        }
        if self.is_error:
            block["is_error"] = True
        return block


@dataclass
class Registry:
    tools: dict[str, Tool] = field(default_factory=dict)
    _schemas: list[dict[str, Any]] | None = None

    def tool(
        self, name: str, description: str, input_model: type[BaseModel], *, side_effect: bool
    ) -> Callable[[ToolFn], ToolFn]:
        def register(fn: ToolFn) -> ToolFn:
            self.tools[name] = Tool(name, description, input_model, side_effect, fn)
            self._schemas = None
            return fn

        return register

    def schemas(self) -> list[dict[str, Any]]:
        """The tools' JSON schemas (built once: they are the cached prompt prefix)."""
        if self._schemas is None:
            self._schemas = [t.schema() for t in self.tools.values()]
        return self._schemas

    async def run(self, tc: ToolContext, use: dict[str, Any], timeout_s: float) -> ToolResult:
        """Run one ``tool_use`` block; every failure is an error result for the model."""
        name, use_id = str(use.get("name")), str(use.get("id"))
        found = self.tools.get(name)
        if found is None:
            metrics.TOOL_CALLS.labels("unknown", "error").inc()
            return ToolResult(
                use_id, name, {"erro": f"ferramenta desconhecida: {name}"}, True, False
            )
        try:
            args = found.input_model.model_validate(use.get("input") or {})
        except ValidationError as exc:
            metrics.TOOL_CALLS.labels(name, "invalid").inc()
            errors = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
            return ToolResult(use_id, name, {"erro": "entrada inválida", "detalhes": errors},
                              True, False)  # fmt: skip
        try:
            content = await asyncio.wait_for(found.fn(tc, args), timeout_s)
        except ToolFailure as exc:
            metrics.TOOL_CALLS.labels(name, "refused").inc()
            return ToolResult(use_id, name, {"erro": str(exc), **exc.extra}, True, False)
        except TimeoutError:
            metrics.TOOL_CALLS.labels(name, "timeout").inc()
            log.warning("agent.tool_timeout", tool=name, timeout_s=timeout_s)
            return ToolResult(use_id, name, {"erro": "a ferramenta demorou demais"}, True, False)
        except Exception as exc:  # a broken tool must not break the turn
            metrics.TOOL_CALLS.labels(name, "error").inc()
            log.error(
                "agent.tool_error", tool=name, error=type(exc).__name__, detail=str(exc)[:200]
            )
            return ToolResult(use_id, name, {"erro": "falha interna na ferramenta"}, True, False)
        metrics.TOOL_CALLS.labels(name, "ok").inc()
        return ToolResult(use_id, name, content, False, found.side_effect)


REGISTRY = Registry()
tool = REGISTRY.tool
