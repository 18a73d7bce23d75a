"""What a webhook body becomes: typed events, one small frozen dataclass each."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

#: Message types stored in ``mensagens_recebidas.tipo``.
TIPOS = frozenset(
    {"texto", "audio", "imagem", "video", "documento", "sticker", "localizacao", "contato"}
    | {"reacao", "outro", "evento"}
)
MEDIA_TIPOS = frozenset({"audio", "imagem", "video", "documento", "sticker"})


@dataclass(frozen=True)
class InboundMessage:
    """One WhatsApp message (or Chatwoot event) to keep in the inbox."""

    provider: str
    instance: str | None
    provider_message_id: str
    evento: str
    conversa_key: str
    tipo: str
    telefone: str | None = None
    remote_jid: str | None = None
    from_me: bool = False
    is_group: bool = False
    texto: str | None = None
    midia: dict[str, Any] | None = None
    push_name: str | None = None
    provider_ts: datetime | None = None
    kind: str = "mensagem"


@dataclass(frozen=True)
class Ack:
    """A delivery/read status of a message Júlia sent."""

    provider: str
    instance: str | None
    provider_message_id: str
    status: str
    remote_jid: str | None = None
    from_me: bool | None = None


@dataclass(frozen=True)
class ConnectionEvent:
    """A gateway instance (chip) connected, disconnected or was refused."""

    provider: str
    instance: str
    state: str
    status_reason: int | None = None


@dataclass(frozen=True)
class Ignored:
    """An event Júlia acknowledges and does nothing with."""

    evento: str
    reason: str


Event = InboundMessage | Ack | ConnectionEvent | Ignored
