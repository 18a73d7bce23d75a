"""Webhook bodies → typed events: Evolution API v2 (and v1.8 shapes), Z-API, Chatwoot.

Pure functions: no I/O, no clock. A body that cannot be understood raises
:class:`~julia.errors.InvalidPayload` with a short reason (no personal data in it);
an event Júlia does not use becomes :class:`~julia.inbox.events.Ignored`.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from julia.core import phones
from julia.core.errors import InvalidPayload, InvalidPhone
from julia.inbox.events import Ack, ConnectionEvent, Event, Ignored, InboundMessage

#: Evolution/Baileys numeric statuses (``src/utils/renderStatus.ts``).
EVOLUTION_STATUS = {0: "ERROR", 1: "PENDING", 2: "SERVER_ACK", 3: "DELIVERY_ACK", 4: "READ"} | {
    5: "PLAYED"
}
#: Message keys that carry no content of their own.
_NOISE_KEYS = frozenset({"messageContextInfo", "senderKeyDistributionMessage", "base64"})
#: Content Júlia never turns into a turn (edits, deletes, polls, key distribution).
_PROTOCOL_KEYS = frozenset(
    {"protocolMessage", "pollUpdateMessage", "editedMessage", "keepInChatMessage"}
)


# --- phones -----------------------------------------------------------------


def phone_from_jid(jid: object) -> str | None:
    """E.164 of a WhatsApp JID or bare number; None for @lid, groups and junk.

    Brazilian numbers (``55`` + 10 or 11 digits) go through :mod:`julia.core.phones`, which
    restores the ninth digit WhatsApp drops; other countries keep their digits.
    """
    if not isinstance(jid, str) or not jid:
        return None
    user, _, server = jid.partition("@")
    if server and server not in ("s.whatsapp.net", "c.us"):
        return None  # @lid, @g.us, @broadcast, @newsletter
    digits = user.split(":", 1)[0].strip().lstrip("+")
    if not phones.ascii_digits(digits, max_len=15):
        return None
    if digits.startswith("55") and len(digits) in (12, 13):
        try:
            return phones.normalize(digits)
        except InvalidPhone:
            return None
    if 8 <= len(digits) <= 15 and not digits.startswith("0"):
        return "+" + digits
    return None


def _first_phone(*candidates: object) -> str | None:
    for c in candidates:
        phone = phone_from_jid(c)
        if phone:
            return phone
    return None


# --- helpers ----------------------------------------------------------------


def _obj(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidPayload(f"{what} is not a JSON object")
    return value


def _str(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _short(value: object, what: str) -> str | None:
    """An optional key-like string (instance, status): kept in indexed columns, so bounded."""
    s = _str(value)
    if s is not None and len(s) > 256:
        raise InvalidPayload(f"{what} is too long")
    return s


def _required_str(value: object, what: str) -> str:
    s = _str(value)
    if s is None:
        raise InvalidPayload(f"missing {what}")
    if len(s) > 256:
        raise InvalidPayload(f"{what} is too long")
    return s


def _small_int(value: object) -> int | None:
    """An int that fits the tables' ``integer`` columns; None for bools, floats, huge values."""
    if isinstance(value, int) and not isinstance(value, bool) and -(2**31) <= value < 2**31:
        return value
    return None


def _timestamp(value: object) -> datetime | None:
    """Unix seconds or milliseconds (int or numeric string), or an ISO string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        if phones.ascii_digits(value, max_len=16):
            value = int(value)
        else:
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                return None
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 10**11 else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None


def _event_name(raw: object) -> str:
    """``MESSAGES_UPSERT`` / ``messages-upsert`` / ``messages.upsert`` → ``messages.upsert``."""
    return str(raw).strip().lower().replace("_", ".").replace("-", ".")


# --- Evolution ----------------------------------------------------------------


def parse_evolution(body: object, suffix: str | None = None) -> list[Event]:
    """An Evolution webhook (one envelope) → its events.

    ``suffix`` is the per-event URL suffix (``messages-upsert``) used when the body
    carries no ``event`` field.
    """
    envelope = _obj(body, "body")
    raw_event = envelope.get("event") or suffix
    if not raw_event:
        raise InvalidPayload("missing event")
    event = _event_name(raw_event)
    instance = _short(envelope.get("instance"), "instance")
    data = envelope.get("data")
    items = data if isinstance(data, list) else [data]
    if event == "messages.upsert":
        return [_evolution_upsert(instance, _obj(d, "data")) for d in items]
    if event == "messages.update":
        return [_evolution_update(instance, _obj(d, "data")) for d in items]
    if event == "connection.update":
        d = _obj(data, "data")
        state = _required_str(d.get("state"), "data.state")
        name = _short(d.get("instance"), "data.instance") or instance
        if name is None:
            raise InvalidPayload("missing instance")
        return [
            ConnectionEvent("evolution", name, state.lower(), _small_int(d.get("statusReason")))
        ]
    return [Ignored(event, "event not handled")]


def _evolution_upsert(instance: str | None, d: dict[str, Any]) -> Event:
    key = _obj(d.get("key"), "data.key")
    message_id = _required_str(key.get("id"), "data.key.id")
    remote_jid = _required_str(key.get("remoteJid"), "data.key.remoteJid")
    is_group = remote_jid.endswith("@g.us")
    if remote_jid.endswith("@broadcast") or remote_jid.endswith("@newsletter"):
        return Ignored("messages.upsert", "status or newsletter")
    if is_group:
        telefone = _first_phone(
            key.get("participantAlt"),
            key.get("participantPn"),
            d.get("participantPn"),
            key.get("participant"),
            d.get("participant"),
        )
        conversa_key = remote_jid
    else:
        # @lid senders: the real number is in remoteJidAlt (2.3.6+) or senderPn (2.3.0-2.3.5).
        telefone = _first_phone(
            remote_jid, key.get("remoteJidAlt"), key.get("senderPn"), d.get("senderPn")
        )
        conversa_key = telefone or remote_jid
    message = d.get("message")
    content = _classify_evolution(
        d.get("messageType"), message if isinstance(message, dict) else {}
    )
    if content is None:
        return Ignored("messages.upsert", "protocol message")
    tipo, texto, midia = content
    return InboundMessage(
        provider="evolution",
        instance=instance or _str(d.get("owner")),
        provider_message_id=message_id,
        evento="messages.upsert",
        conversa_key=conversa_key,
        tipo=tipo,
        telefone=telefone,
        remote_jid=remote_jid,
        from_me=key.get("fromMe") is True,
        is_group=is_group,
        texto=texto,
        midia=midia,
        push_name=_str(d.get("pushName")),
        provider_ts=_timestamp(d.get("messageTimestamp")),
    )


_EVOLUTION_MEDIA = {
    "imageMessage": "imagem",
    "audioMessage": "audio",
    "videoMessage": "video",
    "documentMessage": "documento",
    "stickerMessage": "sticker",
}


def _media(kind: str, m: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
    descriptor = {
        "mimetype": _str(m.get("mimetype")),
        "url": _str(message.get("mediaUrl")) or _str(m.get("url")),
        "file_name": _str(m.get("fileName")),
        "file_length": _str(m.get("fileLength")),
        "seconds": m.get("seconds") if isinstance(m.get("seconds"), int) else None,
        "ptt": m.get("ptt") is True,
        "has_base64": isinstance(message.get("base64"), str),
    }
    return {k: v for k, v in descriptor.items() if v not in (None, False)} | {"kind": kind}


def _classify_evolution(
    message_type: object, message: dict[str, Any]
) -> tuple[str, str | None, dict[str, Any] | None] | None:
    """(tipo, texto, midia), or None for a protocol message with nothing to answer."""
    if isinstance(message.get("conversation"), str):
        return "texto", message["conversation"], None
    ext = message.get("extendedTextMessage")
    if isinstance(ext, dict) and isinstance(ext.get("text"), str):
        return "texto", ext["text"], None
    if isinstance(message.get("documentWithCaptionMessage"), dict):
        inner = message["documentWithCaptionMessage"].get("message")
        if isinstance(inner, dict) and isinstance(inner.get("documentMessage"), dict):
            message = {**message, "documentMessage": inner["documentMessage"]}
    for field, tipo in _EVOLUTION_MEDIA.items():
        m = message.get(field)
        if isinstance(m, dict):
            caption = _str(m.get("caption")) or _str(message.get("speechToText"))
            return tipo, caption, _media(tipo, m, message)
    loc = message.get("locationMessage")
    if isinstance(loc, dict):
        text = _str(loc.get("name")) or _str(loc.get("address"))
        coords = {"latitude": loc.get("degreesLatitude"), "longitude": loc.get("degreesLongitude")}
        return "localizacao", text, coords
    for field in ("contactMessage", "contactsArrayMessage"):
        if isinstance(message.get(field), dict):
            return "contato", _str(message[field].get("displayName")), None
    reaction = message.get("reactionMessage")
    if isinstance(reaction, dict):
        return "reacao", _str(reaction.get("text")), None
    for field, text_key in (
        ("buttonsResponseMessage", "selectedDisplayText"),
        ("templateButtonReplyMessage", "selectedDisplayText"),
        ("listResponseMessage", "title"),
    ):
        if isinstance(message.get(field), dict):
            return "texto", _str(message[field].get(text_key)), None
    keys = set(message) - _NOISE_KEYS
    if not keys or keys & _PROTOCOL_KEYS or message_type in _PROTOCOL_KEYS:
        return None
    return "outro", None, {"message_type": _str(message_type) or sorted(keys)[0]}


def _evolution_update(instance: str | None, d: dict[str, Any]) -> Event:
    key = d.get("key") if isinstance(d.get("key"), dict) else {}
    assert isinstance(key, dict)
    message_id = _required_str(d.get("keyId") or key.get("id"), "data.keyId")
    status = d.get("status")
    if isinstance(status, int) and not isinstance(status, bool):
        status = EVOLUTION_STATUS.get(status, str(status))
    if not isinstance(status, str) or not status.strip():
        return Ignored("messages.update", "no status")
    if len(status) > 64:
        raise InvalidPayload("data.status is too long")
    from_me = d.get("fromMe", key.get("fromMe"))
    return Ack(
        provider="evolution",
        instance=instance,
        provider_message_id=message_id,
        status=status.upper(),
        remote_jid=_str(d.get("remoteJid") or key.get("remoteJid")),
        from_me=from_me if isinstance(from_me, bool) else None,
    )


# --- Z-API ------------------------------------------------------------------

_ZAPI_MEDIA = {
    "image": ("imagem", "imageUrl"),
    "audio": ("audio", "audioUrl"),
    "video": ("video", "videoUrl"),
    "document": ("documento", "documentUrl"),
    "sticker": ("sticker", "stickerUrl"),
}


def parse_zapi(body: object) -> list[Event]:
    """A Z-API webhook → its events (received message, status, connection)."""
    d = _obj(body, "body")
    kind = _str(d.get("type"))
    if kind is None:
        raise InvalidPayload("missing type")
    instance = _short(d.get("instanceId"), "instanceId")
    if kind == "ReceivedCallback":
        return [_zapi_received(instance, d)]
    if kind == "MessageStatusCallback":
        status = _required_str(d.get("status"), "status").upper()
        if len(status) > 64:
            raise InvalidPayload("status is too long")
        ids = d.get("ids")
        if not isinstance(ids, list) or not ids:
            raise InvalidPayload("missing ids")
        return [
            Ack("zapi", instance, _required_str(i, "ids[]"), status, _str(d.get("phone")))
            for i in ids
        ]
    if kind in ("DisconnectedCallback", "ConnectedCallback"):
        if instance is None:
            raise InvalidPayload("missing instanceId")
        state = "close" if kind == "DisconnectedCallback" else "open"
        return [ConnectionEvent("zapi", instance, state)]
    return [Ignored(kind, "event not handled")]


def _zapi_received(instance: str | None, d: dict[str, Any]) -> Event:
    message_id = _required_str(d.get("messageId"), "messageId")
    phone = _required_str(d.get("phone"), "phone")
    if d.get("isEdit") is True:
        return Ignored("ReceivedCallback", "edit")
    if d.get("isStatusReply") is True or d.get("broadcast") is True or d.get("isNewsletter"):
        return Ignored("ReceivedCallback", "status or newsletter")
    is_group = d.get("isGroup") is True or phone.endswith("-group")
    if is_group:
        telefone = _first_phone(d.get("participantPhone"))
        conversa_key = f"zapi-group:{phone}"
    else:
        telefone = _first_phone(phone)
        conversa_key = telefone or phone
    tipo, texto, midia = _classify_zapi(d)
    return InboundMessage(
        provider="zapi",
        instance=instance,
        provider_message_id=message_id,
        evento="ReceivedCallback",
        conversa_key=conversa_key,
        tipo=tipo,
        telefone=telefone,
        remote_jid=phone,
        from_me=d.get("fromMe") is True,
        is_group=is_group,
        texto=texto,
        midia=midia,
        push_name=_str(d.get("senderName")) or _str(d.get("chatName")),
        provider_ts=_timestamp(d.get("momment")),
    )


def _classify_zapi(d: dict[str, Any]) -> tuple[str, str | None, dict[str, Any] | None]:
    text = d.get("text")
    if isinstance(text, dict) and isinstance(text.get("message"), str):
        return "texto", text["message"], None
    for field, (tipo, url_key) in _ZAPI_MEDIA.items():
        m = d.get(field)
        if isinstance(m, dict):
            midia = {
                "kind": tipo,
                "url": _str(m.get(url_key)),
                "mimetype": _str(m.get("mimeType")),
                "file_name": _str(m.get("fileName")),
                "seconds": m.get("seconds") if isinstance(m.get("seconds"), int) else None,
                "ptt": m.get("ptt") is True,
            }
            caption = _str(m.get("caption")) or _str(m.get("title"))
            return tipo, caption, {k: v for k, v in midia.items() if v not in (None, False)}
    loc = d.get("location")
    if isinstance(loc, dict):
        coords = {"latitude": loc.get("latitude"), "longitude": loc.get("longitude")}
        return "localizacao", _str(loc.get("name")) or _str(loc.get("address")), coords
    if isinstance(d.get("contact"), dict):
        return "contato", _str(d["contact"].get("displayName")), None
    if isinstance(d.get("reaction"), dict):
        return "reacao", _str(d["reaction"].get("value")), None
    for field in ("buttonsResponseMessage", "listResponseMessage"):
        if isinstance(d.get(field), dict):
            return "texto", _str(d[field].get("message")) or _str(d[field].get("title")), None
    return "outro", None, None


# --- Chatwoot ---------------------------------------------------------------

CHATWOOT_EVENTS = frozenset(
    {"message_created", "message_updated", "conversation_status_changed"}
    | {"conversation_updated", "conversation_created", "conversation_resolved"}
)


def parse_chatwoot(body: object, raw: bytes, delivery_id: str | None = None) -> list[Event]:
    """A Chatwoot webhook → one event kept for the handoff capability (or ignored).

    ``delivery_id`` (``X-Chatwoot-Delivery``) is not signed, so it never names an event:
    identity comes from the message id or the body's digest.
    """
    d = _obj(body, "body")
    event = _str(d.get("event"))
    if event is None:
        raise InvalidPayload("missing event")
    if event not in CHATWOOT_EVENTS:
        return [Ignored(event, "event not handled")]
    is_message = event.startswith("message_")
    conversation = d.get("conversation") if is_message else d
    if not isinstance(conversation, dict):
        raise InvalidPayload("missing conversation")
    conversation_id = _required_str(conversation.get("id"), "conversation.id")
    if event == "message_created":
        pmid = f"message_created:{_required_str(d.get('id'), 'id')}"
    else:  # by what is signed: a replay under a new (unsigned) delivery id is a duplicate
        digest = hashlib.sha256(raw).hexdigest()[:24]
        pmid = f"{event}:{conversation_id}:{digest}"
    meta = conversation.get("meta") if isinstance(conversation.get("meta"), dict) else {}
    assert isinstance(meta, dict)
    contact = meta.get("sender") if isinstance(meta.get("sender"), dict) else d.get("sender")
    phone = _str(contact.get("phone_number")) if isinstance(contact, dict) else None
    account = d.get("account")
    return [
        InboundMessage(
            provider="chatwoot",
            instance=_short(account.get("id"), "account.id") if isinstance(account, dict) else None,
            provider_message_id=pmid,
            evento=event,
            conversa_key=f"chatwoot:{conversation_id}",
            tipo="evento",
            telefone=_first_phone(phone.lstrip("+")) if phone else None,
            from_me=d.get("message_type") == "outgoing",
            texto=_str(d.get("content")) if is_message else _str(d.get("status")),
            provider_ts=_timestamp(d.get("created_at") or d.get("timestamp")),
            kind="chatwoot",
        )
    ]
