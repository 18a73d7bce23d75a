"""Pure parsing: phones (ninth digit, @lid), message kinds, v1.8 shapes, Z-API, Chatwoot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from julia.core.errors import InvalidPayload
from julia.inbox import (
    Ack,
    ConnectionEvent,
    Ignored,
    InboundMessage,
    parse_chatwoot,
    parse_evolution,
    parse_zapi,
    phone_from_jid,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


@pytest.mark.parametrize(
    ("jid", "phone"),
    [("556481140676@s.whatsapp.net", "+5564981140676"),  # without the ninth digit
     ("5564981140676@s.whatsapp.net", "+5564981140676"),  # with it
     ("5511987654321:12@s.whatsapp.net", "+5511987654321"),  # device suffix
     ("551133334444@s.whatsapp.net", "+551133334444"),  # landline
     ("59178742806@s.whatsapp.net", "+59178742806"),  # Bolivia keeps its digits
     ("5544999999999", "+5544999999999"),  # Z-API bare number
     ("103899771998284@lid", None), ("120363141381952108@g.us", None),
     ("status@broadcast", None), ("", None), ("abc@s.whatsapp.net", None)],
)  # fmt: skip
def test_phone_from_jid(jid: str, phone: str | None) -> None:
    assert phone_from_jid(jid) == phone


def _upsert(key: dict[str, Any], message: dict[str, Any], **data: Any) -> dict[str, Any]:
    return {"event": "messages.upsert", "instance": "chip1",
            "data": {"key": key, "message": message, **data}}  # fmt: skip


def test_lid_sender_uses_remote_jid_alt_or_sender_pn() -> None:
    alt = _upsert({"remoteJid": "103899771998284@lid", "id": "A", "fromMe": False,
                   "remoteJidAlt": "556481140676@s.whatsapp.net", "addressingMode": "lid"},
                  {"conversation": "oi"})  # fmt: skip
    pn = _upsert({"remoteJid": "13718@lid", "id": "B", "fromMe": False,
                  "senderPn": "5511987654321@s.whatsapp.net"}, {"conversation": "oi"})  # fmt: skip
    bare = _upsert({"remoteJid": "13718@lid", "id": "C"}, {"conversation": "oi"})
    [a], [b], [c] = parse_evolution(alt), parse_evolution(pn), parse_evolution(bare)
    assert isinstance(a, InboundMessage) and a.telefone == "+5564981140676"
    assert a.conversa_key == "+5564981140676"
    assert isinstance(b, InboundMessage) and b.telefone == "+5511987654321"
    assert isinstance(c, InboundMessage) and c.telefone is None and c.conversa_key == "13718@lid"


@pytest.mark.parametrize(
    ("message", "tipo", "texto"),
    [({"extendedTextMessage": {"text": "olá"}}, "texto", "olá"),  # v1.x shape
     ({"imageMessage": {"mimetype": "image/jpeg", "caption": "CRM"}}, "imagem", "CRM"),
     ({"documentWithCaptionMessage": {"message": {"documentMessage": {
         "fileName": "crm.pdf", "mimetype": "application/pdf"}}}}, "documento", None),
     ({"videoMessage": {"mimetype": "video/mp4"}}, "video", None),
     ({"stickerMessage": {"mimetype": "image/webp"}}, "sticker", None),
     ({"locationMessage": {"degreesLatitude": -23.5, "degreesLongitude": -46.6,
                           "name": "Hospital"}}, "localizacao", "Hospital"),
     ({"reactionMessage": {"text": "👍", "key": {"id": "X"}}}, "reacao", "👍"),
     ({"buttonsResponseMessage": {"selectedDisplayText": "Sim"}}, "texto", "Sim"),
     ({"pollCreationMessage": {"name": "?"}}, "outro", None)],
)  # fmt: skip
def test_message_kinds(message: dict[str, Any], tipo: str, texto: str | None) -> None:
    [ev] = parse_evolution(_upsert({"remoteJid": "5511987654321@s.whatsapp.net", "id": "A"},
                                   message))  # fmt: skip
    assert isinstance(ev, InboundMessage) and (ev.tipo, ev.texto) == (tipo, texto)


def test_protocol_messages_are_ignored() -> None:
    for message in ({"protocolMessage": {"type": 0}}, {"messageContextInfo": {}}, {}):
        [ev] = parse_evolution(_upsert({"remoteJid": "5511987654321@s.whatsapp.net", "id": "A"},
                                       message))  # fmt: skip
        assert isinstance(ev, Ignored)


def test_v1_8_owner_and_provider_timestamp() -> None:
    [ev] = parse_evolution(load("evolution_messages_upsert_fromme_v1_8.json"))
    assert isinstance(ev, InboundMessage)
    assert ev.instance == "tigo1" and ev.from_me
    assert ev.provider_ts is not None and int(ev.provider_ts.timestamp()) == 1746133821


def test_numeric_ack_status_and_event_name_spellings() -> None:
    body = {"event": "MESSAGES_UPDATE", "instance": "i", "data": {"keyId": "K", "status": 4}}
    assert parse_evolution(body) == [Ack("evolution", "i", "K", "READ", None, None)]
    [conn] = parse_evolution(load("evolution_connection_update_close.json"))
    assert conn == ConnectionEvent("evolution", "tigo1", "close", 401)


def test_zapi_shapes() -> None:
    [msg] = parse_zapi(load("zapi_on_message_received_text.json"))
    assert isinstance(msg, InboundMessage) and msg.texto == "test" and msg.provider == "zapi"
    assert msg.provider_ts is not None and msg.provider_ts.year == 2021
    audio = {"type": "ReceivedCallback", "messageId": "Z1", "phone": "5544999999999",
             "audio": {"ptt": True, "seconds": 10, "audioUrl": "https://x/a.ogg",
                       "mimeType": "audio/ogg; codecs=opus"}}  # fmt: skip
    [a] = parse_zapi(audio)
    assert isinstance(a, InboundMessage) and a.tipo == "audio"
    assert a.midia == {"kind": "audio", "url": "https://x/a.ogg", "seconds": 10, "ptt": True,
                       "mimetype": "audio/ogg; codecs=opus"}  # fmt: skip
    group = {
        "type": "ReceivedCallback",
        "messageId": "Z2",
        "phone": "120363-group",
        "isGroup": True,
        "participantPhone": "5511987654321",
        "text": {"message": "x"},
    }
    [g] = parse_zapi(group)
    assert isinstance(g, InboundMessage) and g.is_group and g.telefone == "+5511987654321"
    assert parse_zapi({"type": "ReceivedCallback", "messageId": "Z3", "phone": "1",
                       "isEdit": True}) == [Ignored("ReceivedCallback", "edit")]  # fmt: skip


def test_chatwoot_dedupe_ids() -> None:
    raw = (FIXTURES / "chatwoot_conversation_status_changed.json").read_bytes()
    [a] = parse_chatwoot(json.loads(raw), raw)
    [b] = parse_chatwoot(json.loads(raw), raw, delivery_id="uuid-1")
    assert isinstance(a, InboundMessage) and a.provider_message_id.startswith(
        "conversation_status_changed:10:"
    )
    # the delivery header is not signed: it never makes a replayed body a new event
    assert isinstance(b, InboundMessage) and b.provider_message_id == a.provider_message_id
    assert a.texto == "open" and a.kind == "chatwoot"
    [ignored] = parse_chatwoot({"event": "contact_created"}, b"{}")
    assert isinstance(ignored, Ignored)


@pytest.mark.parametrize(
    "body",
    [[], {"event": "messages.upsert", "data": "x"}, {"event": "messages.upsert", "data": {}},
     {"event": "messages.upsert", "data": {"key": {"id": "A" * 300, "remoteJid": "1@c.us"}}},
     {"event": "connection.update", "data": {"state": "open"}}],
)  # fmt: skip
def test_bad_evolution_bodies_raise_invalid_payload(body: Any) -> None:
    with pytest.raises(InvalidPayload):
        parse_evolution(body)
