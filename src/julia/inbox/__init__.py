"""Inbound: webhook bodies parsed into typed events, kept once in a durable inbox.

The shim calls, per request: :func:`verify_gateway` / :func:`verify_chatwoot`,
:func:`decode_body`, one ``parse_*`` function, then :func:`accept`. The worker runs
:func:`julia.inbox.consumer.run`, which turns stored messages into turns and runs
the processors of :mod:`julia.inbox.processors`.
"""

from __future__ import annotations

import json
from typing import Any

from julia.core.errors import InvalidPayload
from julia.inbox.auth import chatwoot_signature, verify_chatwoot, verify_gateway
from julia.inbox.events import Ack, ConnectionEvent, Event, Ignored, InboundMessage
from julia.inbox.parsing import parse_chatwoot, parse_evolution, parse_zapi, phone_from_jid
from julia.inbox.store import (
    AcceptResult,
    InboxRow,
    accept,
    get,
    list_inbox,
    replay,
    turns_awaiting_reply,
)

__all__ = [
    "AcceptResult",
    "Ack",
    "ConnectionEvent",
    "Event",
    "Ignored",
    "InboundMessage",
    "InboxRow",
    "accept",
    "chatwoot_signature",
    "decode_body",
    "get",
    "list_inbox",
    "parse_chatwoot",
    "parse_evolution",
    "parse_zapi",
    "phone_from_jid",
    "replay",
    "turns_awaiting_reply",
    "verify_chatwoot",
    "verify_gateway",
]


def decode_body(raw: bytes) -> tuple[Any, str]:
    """The JSON value of a body and its text; :class:`InvalidPayload` when it is not JSON."""
    try:
        text = raw.decode("utf-8")
        return json.loads(text), text
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidPayload("malformed JSON") from None
