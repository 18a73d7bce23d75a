"""The agent's turn: iterations, deadlines, fallbacks, reply size, unanswered alert.
Composed into :class:`julia.settings.Settings`."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings


class AgentSettings(BaseSettings):
    """The agent: how a turn is bounded and how its reply is delivered."""

    agent_max_iterations: int = Field(
        default=3, ge=1, le=10, description="Model calls with tools a turn may make."
    )
    agent_tool_timeout_s: float = Field(default=10.0, gt=0, description="Timeout of one tool call.")
    agent_turn_deadline_s: float = Field(
        default=60.0, gt=0, description="Deadline of a whole turn (context, model, tools)."
    )
    agent_history_messages: int = Field(
        default=20, ge=2, description="Messages of history sent when there is no summary."
    )
    agent_summary_after: int = Field(
        default=10, ge=4, description="Conversations longer than this get a summary + last 5."
    )
    agent_fallbacks_handoff: int = Field(
        default=3, ge=1, description="Fallbacks in a row in one conversation that ask a human."
    )
    agent_message_chars: int = Field(
        default=350, ge=80, description="Longest WhatsApp message of a reply (split above it)."
    )
    agent_max_messages: int = Field(
        default=4, ge=1, description="Most WhatsApp messages one reply may be split into."
    )
    agent_message_delay_s: float = Field(
        default=2.0, ge=0, description="Pause between the messages of one reply (human-like)."
    )
    agent_unanswered_min: float = Field(
        default=5.0, gt=0, description="A turn waiting longer than this raises agent.unanswered."
    )
    agent_buscar_limit: int = Field(
        default=5, ge=1, le=10, description="Most shifts one buscar_vagas returns."
    )
    agent_pending_interval_s: float = Field(
        default=30.0, gt=0, description="How often the agent_pending job answers due turns."
    )
    agent_unanswered_interval_s: float = Field(
        default=60.0, gt=0, description="How often the agent_unanswered job checks."
    )
