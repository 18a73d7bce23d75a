"""The inbound processor pipeline: small classes run in priority order on a turn."""

from __future__ import annotations

from julia.inbox.processors.base import (
    Message,
    PipelineResult,
    Processor,
    Step,
    TurnContext,
    halt,
    proceed,
    run_pipeline,
)
from julia.inbox.processors.builtin import default_processors, next_opening

__all__ = [
    "Message",
    "PipelineResult",
    "Processor",
    "Step",
    "TurnContext",
    "default_processors",
    "halt",
    "next_opening",
    "proceed",
    "run_pipeline",
]
