"""Hostile and broken senders (issue 12): what any bytes a webhook carries can and cannot do."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from pydantic import SecretStr

from julia.core import phones
from julia.core.app import App
from julia.core.clock import FrozenClock
from julia.core.errors import InvalidPhone
from julia.inbox import chatwoot_signature, phone_from_jid
from julia.settings import Settings

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TOKEN = "webhook-secret-for-tests-0123456789"
CHATWOOT_SECRET = "chatwoot-secret-for-tests"
AUTH = {"X-Webhook-Token": TOKEN}
ARABIC = "٥٥١١٩٨٧٦٥٤٣٢١"  # 5511987654321 in Arabic-Indic digits
FULLWIDTH = "５５１１９８７６５４３２１"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "webhook_token": SecretStr(TOKEN),
            "chatwoot_webhook_secret": SecretStr(CHATWOOT_SECRET),
        }
    )


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


async def count(app: App, table: str = "mensagens_recebidas") -> int:
    async with app.pool.connection() as conn:
        cur = await conn.execute(f"SELECT count(*) AS n FROM {table}")
        row = await cur.fetchone()
    assert row is not None
    return int(row["n"])


# --- item 4: non-ASCII digits, retyped fields --------------------------------------


@pytest.mark.parametrize("raw", [ARABIC, FULLWIDTH, "55119876543²1", "+55 (11) ９８７６５-4321"])
def test_only_ascii_digits_make_a_phone(raw: str) -> None:
    with pytest.raises(InvalidPhone):
        phones.normalize(raw)
    assert phone_from_jid(raw + "@s.whatsapp.net") is None
    assert not phones.ascii_digits(raw)


def _upsert(i: int, jid: str) -> bytes:
    b = fixture("evolution_messages_upsert_text.json")
    b["data"]["key"]["id"] = f"HOSTILE{i}"
    b["data"]["key"]["remoteJid"] = jid
    return json.dumps(b).encode()


async def test_a_non_ascii_phone_does_not_fail_the_good_webhooks_beside_it(
    client: httpx.AsyncClient, app: App
) -> None:
    good = [_upsert(i, "5511987654321@s.whatsapp.net") for i in range(20)]
    zapi = fixture("zapi_on_message_received_text.json") | {"phone": FULLWIDTH}
    chatwoot = fixture("chatwoot_message_created.json")
    chatwoot["conversation"]["meta"]["sender"]["phone_number"] = "+" + ARABIC
    raw_cw = json.dumps(chatwoot).encode()
    ts = str(int(app.clock.now().timestamp()))
    cw_headers = {"X-Chatwoot-Timestamp": ts}
    cw_headers["X-Chatwoot-Signature"] = chatwoot_signature(CHATWOOT_SECRET, ts, raw_cw)
    answers = await asyncio.gather(
        *(client.post("/webhooks/evolution", content=b, headers=AUTH) for b in good),
        client.post("/webhooks/evolution", content=_upsert(99, ARABIC + "@s.whatsapp.net"),
                    headers=AUTH),
        client.post("/webhooks/zapi", json=zapi, headers=AUTH),
        client.post("/webhooks/chatwoot", content=raw_cw, headers=cw_headers),
    )  # fmt: skip
    assert [a.status_code for a in answers[:20]] == [200] * 20
    assert all(a.status_code < 500 for a in answers), [a.text for a in answers]
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT provider_message_id, telefone FROM mensagens_recebidas ORDER BY id"
        )
        stored = {r["provider_message_id"]: r["telefone"] for r in await cur.fetchall()}
    assert {f"HOSTILE{i}" for i in range(20)} <= set(stored)
    assert stored.get("HOSTILE99") is None  # kept without a phone, or refused: never a 503


@pytest.mark.parametrize("reason", [True, 1e300, 2**40, "428", None])
async def test_connection_update_with_a_retyped_status_reason(
    client: httpx.AsyncClient, app: App, reason: object
) -> None:
    body = fixture("evolution_connection_update_close.json")
    body["data"]["statusReason"] = reason
    r = await client.post("/webhooks/evolution", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    assert await count(app, "gateway_conexao_eventos") == 1


async def test_a_row_postgres_refuses_is_400_alone_in_its_batch(
    client: httpx.AsyncClient, app: App
) -> None:
    """Whatever slips past the parser, a CHECK or index refusal fails only its own request."""
    huge = fixture("evolution_messages_update.json")
    data = huge["data"] if isinstance(huge["data"], dict) else huge["data"][0]
    data["status"] = "X" * 5000
    bodies = [_upsert(i, "5511987654321@s.whatsapp.net") for i in range(10)]
    answers = await asyncio.gather(
        *(client.post("/webhooks/evolution", content=b, headers=AUTH) for b in bodies),
        client.post("/webhooks/evolution", json=huge, headers=AUTH),
    )
    assert [a.status_code for a in answers] == [200] * 10 + [400]
    assert await count(app) == 10 and await count(app, "mensagens_acks") == 0


# --- item 5: Chatwoot timestamps and replays ------------------------------------


@pytest.mark.parametrize("ts", ["9" * 5000, "17\xb2", "17000\xb9", "-1", ""])
async def test_junk_chatwoot_timestamps_are_401(client: httpx.AsyncClient, ts: str) -> None:
    raw = (FIXTURES / "chatwoot_message_created.json").read_bytes()
    headers = [
        (b"X-Chatwoot-Timestamp", ts.encode("latin-1", "ignore") or ts.encode()),
        (b"X-Chatwoot-Signature", b"sha256=00"),
    ]
    r = await client.post("/webhooks/chatwoot", content=raw, headers=headers)
    assert r.status_code == 401


async def test_a_replayed_signed_chatwoot_body_is_a_duplicate(
    client: httpx.AsyncClient, app: App
) -> None:
    raw = (FIXTURES / "chatwoot_conversation_status_changed.json").read_bytes()
    ts = str(int(app.clock.now().timestamp()))
    signature = chatwoot_signature(CHATWOOT_SECRET, ts, raw)
    answers = []
    for i in range(5):
        headers = {"X-Chatwoot-Timestamp": ts, "X-Chatwoot-Signature": signature}
        headers["X-Chatwoot-Delivery"] = f"replay-{i}"
        answers.append(await client.post("/webhooks/chatwoot", content=raw, headers=headers))
    assert [a.status_code for a in answers] == [200] * 5
    assert [a.json()["status"] for a in answers] == ["accepted"] + ["ignored"] * 4
    assert await count(app) == 1


# --- item 13: a JWT's lifetime is capped ------------------------------------------


async def test_a_jwt_living_past_the_cap_is_refused(
    client: httpx.AsyncClient, app: App, clock: FrozenClock
) -> None:
    body = (FIXTURES / "evolution_messages_upsert_text.json").read_bytes()
    now = int(clock.now().timestamp())
    year_3000 = 32503680000
    for claims in ({"exp": year_3000}, {"iat": now, "exp": year_3000},
                   {"iat": now - 86400 * 365, "exp": now + 60}, {"exp": True}):  # fmt: skip
        token = jwt.encode(claims, TOKEN, algorithm="HS256")
        r = await client.post(
            "/webhooks/evolution", content=body, headers={"Authorization": f"Bearer {token}"}
        )
        assert r.status_code == 401, claims
    assert await count(app) == 0
    token = jwt.encode({"iat": now, "exp": now + 600}, TOKEN, algorithm="HS256")
    r = await client.post(
        "/webhooks/evolution", content=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 200 and await count(app) == 1
