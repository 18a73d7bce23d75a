"""How processors reach the outside: the chip's gateway and the outbound queue.

``gateway_for`` returns the gateway adapter of a provider: one registered in
``app.extensions["gateways"]`` (tests, the worker) or, when credentials are
configured, an adapter built from the settings and cached there. ``None`` means
there is no gateway to call, and the caller degrades (no typing indicator, no
download), never fails.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from julia.core import phones
from julia.core.app import App
from julia.core.logs import get_logger
from julia.core.settings import secret
from julia.fila.queue import NewMessage, enqueue
from julia.gateways.registry import gateway
from julia.inbox.processors.base import TurnContext

if TYPE_CHECKING:
    from julia.gateways.base import Gateway

log = get_logger(__name__)


def gateway_for(app: App, provider: str) -> Gateway | None:
    registered: dict[str, Gateway] = app.extensions.get("gateways", {})
    if provider in registered:
        return registered[provider]
    s = app.settings
    configured = (provider == "evolution" and secret(s.evolution_api_key)) or (
        provider == "zapi" and secret(s.zapi_token)
    )
    if not configured:
        return None

    return gateway(app, provider)


async def send_now(app: App, ctx: TurnContext, texto: str) -> str | None:
    """Send straight through the chip that received the turn (bypassing the queue).

    Only for the one reply the queue must not block: the opt-out confirmation.
    Returns the provider's message id, or None when it could not be sent.
    """
    gateway = gateway_for(app, ctx.provider)
    telefone = ctx.telefone
    if gateway is None or ctx.instance is None or telefone is None:
        return None
    try:
        result = await gateway.send_text(ctx.instance, phones.digits(telefone), texto)
    except Exception as exc:
        log.warning("inbox.send_failed", provider=ctx.provider, error=type(exc).__name__)
        return None
    return result.provider_message_id


async def enqueue_reply(app: App, ctx: TurnContext, texto: str, key: str) -> int | None:
    """Queue a reply to the doctor of the turn; once per turn and ``key`` (idempotent)."""
    if ctx.medico_id is None:
        return None

    queued = await enqueue(
        app,
        NewMessage(
            texto=texto,
            tipo="resposta",
            medico_id=ctx.medico_id,
            conversa_id=ctx.conversa_id,
            idempotency_key=f"inbox:{ctx.mensagens[0].id}:{key}",
        ),
    )
    return queued.id
