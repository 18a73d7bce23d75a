"""Human handoff: the bot/human state Júlia owns, Chatwoot both ways, the way back.

``request`` / ``controlled_by`` / ``is_human`` / ``still_julia`` are what the agent calls.
"""

from julia.handoff.control import Handoff
from julia.handoff.history import Line, Summarizer
from julia.handoff.service import (
    assumir,
    controlled_by,
    devolver,
    is_human,
    mirror_turn,
    public,
    request,
    resolver,
    still_julia,
    waiting,
)

__all__ = [
    "Handoff",
    "Line",
    "Summarizer",
    "assumir",
    "controlled_by",
    "devolver",
    "is_human",
    "mirror_turn",
    "public",
    "request",
    "resolver",
    "still_julia",
    "waiting",
]
