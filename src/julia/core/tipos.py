"""The outbound message types, defined once, with the named sets the send path asks.

"Proactive" used to mean two different sets; here each set is named for the one
question it answers:

* :data:`TIPOS` — what the queue accepts.
* :data:`UNDER_PROACTIVE_LIMITS` — counted by the proactive rate limits (per doctor
  per day, per chip per hour/day, the gap between two sends) and sent only in business
  hours: everything Júlia starts herself (prospeccao, followup, campanha).
* :data:`FIRST_CONTACT` — may reach a number never talked to: the number is checked
  on WhatsApp first (prospeccao, campanha). A followup continues a conversation.
* :data:`RATE_CLASSES` — the rate limiter's classes; :func:`rate_class` maps every
  type onto one (``humano``/``sistema`` count like replies: only the burst limit).
* :func:`weight` — slots a message takes under the proactive limits (a campaign
  message weighs ``JULIA_RATE_LIMIT_CAMPANHA_WEIGHT``).
* :func:`trust_class` — which chip trust threshold a type needs.
"""

from __future__ import annotations

#: Every type the queue accepts, in the order the CLI lists them.
TIPOS: tuple[str, ...] = ("resposta", "followup", "prospeccao", "campanha", "humano", "sistema")

#: Under the proactive rate limits and business hours.
UNDER_PROACTIVE_LIMITS = frozenset({"prospeccao", "followup", "campanha"})

#: First contacts: the number is checked on WhatsApp before the send.
FIRST_CONTACT = frozenset({"prospeccao", "campanha"})

#: The rate limiter's classes: whether each is under the proactive limits.
RATE_CLASSES: dict[str, bool] = {
    "resposta": False,
    "prospeccao": True,
    "followup": True,
    "campanha": True,
}


def rate_class(tipo: str) -> str:
    """The rate-limit class of a queue type (operator and system messages count as replies)."""
    return tipo if tipo in RATE_CLASSES else "resposta"


def under_proactive_limits(tipo: str) -> bool:
    return tipo in UNDER_PROACTIVE_LIMITS


def weight(tipo: str, campanha_weight: int) -> int:
    """Slots one message of ``tipo`` takes under the proactive limits."""
    return campanha_weight if tipo == "campanha" else 1


def trust_class(tipo: str) -> str:
    """Which chip trust threshold ``tipo`` needs: prospeccao, followup or resposta."""
    if tipo in FIRST_CONTACT:
        return "prospeccao"
    if tipo == "followup":
        return "followup"
    return "resposta"
