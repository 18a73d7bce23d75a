"""The webhook shim end to end in-process: auth, limits, parsing, the inbox rows it writes."""

from __future__ import annotations

import asyncio
import json
import time
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from pydantic import SecretStr
from shim.app import create_app

from julia.core.app import App
from julia.core.clock import FrozenClock
from julia.inbox import chatwoot_signature
from julia.settings import Settings

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TOKEN = "webhook-secret-for-tests-0123456789"
CHATWOOT_SECRET = "chatwoot-secret-for-tests"
AUTH = {"X-Webhook-Token": TOKEN}


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


def signed(clock: FrozenClock, raw: bytes) -> dict[str, str]:
    ts = str(int(clock.now().timestamp()))
    return {
        "X-Chatwoot-Timestamp": ts,
        "X-Chatwoot-Signature": chatwoot_signature(CHATWOOT_SECRET, ts, raw),
        "Content-Type": "application/json",
    }


async def rows(
    app: App, table: str = "mensagens_recebidas", order: str = "id"
) -> list[dict[str, Any]]:
    async with app.pool.connection() as conn:
        cur = await conn.execute(f"SELECT * FROM {table} ORDER BY {order}")
        return list(await cur.fetchall())


# --- every recorded payload -----------------------------------------------------

MESSAGES = {
    "evolution_messages_upsert_text.json": {
        "telefone": "+5564981140676", "texto": "Oii", "tipo": "texto", "from_me": False,
        "is_group": False, "instance": "caldasIA",
        "provider_message_id": "782647C0073AA0039110EB72593C4AC5",
    },
    "evolution_messages_upsert_fromme.json": {
        "telefone": "+5581997088404", "texto": "Texto da mensagem", "tipo": "texto",
        "from_me": True, "is_group": False,
    },
    "evolution_messages_upsert_fromme_v1_8.json": {
        "telefone": "+59171146267", "texto": "menasje saliente solo texto", "tipo": "texto",
        "from_me": True, "instance": "tigo1",
    },
    "evolution_messages_upsert_group.json": {
        "telefone": None, "texto": "test 001  hola", "tipo": "texto", "is_group": True,
        "conversa_key": "120363141381952108@g.us",
    },
    "evolution_messages_upsert_audio.json": {
        "telefone": "+59178742806", "texto": None, "tipo": "audio", "from_me": False,
    },
    "zapi_on_message_received_text.json": {
        "telefone": "+5544999999999", "texto": "test", "tipo": "texto", "from_me": False,
        "provider": "zapi", "provider_message_id": "A20DA9C0183A2D35A260F53F5D2B9244",
    },
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(MESSAGES))
async def test_recorded_messages_land_in_the_inbox(
    client: httpx.AsyncClient, app: App, name: str
) -> None:
    provider = "zapi" if name.startswith("zapi") else "evolution"
    r = await client.post(f"/webhooks/{provider}", content=(FIXTURES / name).read_bytes(),
                          headers=AUTH)  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "accepted"
    [row] = await rows(app)
    for key, value in MESSAGES[name].items():
        assert row[key] == value, key
    assert row["status"] == "pendente" and row["kind"] == "mensagem"
    assert row["payload"] == fixture(name)
    assert row["received_at"] == app.clock.now()


async def test_audio_descriptor_keeps_what_the_media_processor_needs(
    client: httpx.AsyncClient, app: App
) -> None:
    body = (FIXTURES / "evolution_messages_upsert_audio.json").read_bytes()
    await client.post("/webhooks/evolution", content=body, headers=AUTH)
    [row] = await rows(app)
    assert row["midia"]["mimetype"] == "audio/ogg; codecs=opus"
    assert row["midia"]["ptt"] is True and row["midia"]["has_base64"] is True
    assert row["midia"]["seconds"] == 19


async def test_acks_are_recorded_once_per_status(client: httpx.AsyncClient, app: App) -> None:
    body = fixture("evolution_messages_update.json")
    for status in ("DELIVERY_ACK", "READ", "READ"):
        body["data"]["status"] = status
        r = await client.post("/webhooks/evolution/messages-update", json=body, headers=AUTH)
        assert r.status_code == 200
    assert r.json() == {"status": "ignored", "reason": "duplicate"}
    zapi = (FIXTURES / "zapi_message_status_read.json").read_bytes()
    assert (await client.post("/webhooks/zapi", content=zapi, headers=AUTH)).status_code == 200
    acks = await rows(app, "mensagens_acks")
    assert [(a["provider"], a["provider_message_id"], a["status"]) for a in acks] == [
        ("evolution", "A5561E44C2A63682E4295B52F484C14E", "DELIVERY_ACK"),
        ("evolution", "A5561E44C2A63682E4295B52F484C14E", "READ"),
        ("zapi", "999999999999999999999", "READ"),
    ]
    assert await rows(app) == []


async def test_connection_events_update_the_chip_connection(
    client: httpx.AsyncClient, app: App
) -> None:
    close = (FIXTURES / "evolution_connection_update_close.json").read_bytes()
    zapi = (FIXTURES / "zapi_disconnected.json").read_bytes()
    assert (
        await client.post("/webhooks/evolution", content=close, headers=AUTH)
    ).status_code == 200
    assert (await client.post("/webhooks/zapi", content=zapi, headers=AUTH)).status_code == 200
    opened = {"event": "connection.update", "instance": "tigo1",
              "data": {"instance": "tigo1", "state": "open", "statusReason": 200}}  # fmt: skip
    assert (await client.post("/webhooks/evolution", json=opened, headers=AUTH)).status_code == 200
    current = {
        (r["provider"], r["instance"]): r for r in await rows(app, "gateway_conexoes", "evento_id")
    }
    assert current[("evolution", "tigo1")]["state"] == "open"
    assert current[("zapi", "instance.id")]["state"] == "close"
    events = await rows(app, "gateway_conexao_eventos")
    assert (events[0]["state"], events[0]["status_reason"]) == ("close", 401)


@pytest.mark.parametrize(
    "name",
    ["chatwoot_message_created.json", "chatwoot_message_created_api_channel.json",
     "chatwoot_conversation_status_changed.json"],
)  # fmt: skip
async def test_chatwoot_events_are_kept_for_handoff(
    client: httpx.AsyncClient, app: App, clock: FrozenClock, name: str
) -> None:
    raw = (FIXTURES / name).read_bytes()
    r = await client.post("/webhooks/chatwoot", content=raw, headers=signed(clock, raw))
    assert r.status_code == 200 and r.json()["status"] == "accepted"
    again = await client.post("/webhooks/chatwoot", content=raw, headers=signed(clock, raw))
    assert again.json() == {"status": "ignored", "reason": "duplicate"}
    [row] = await rows(app)
    assert row["provider"] == "chatwoot" and row["kind"] == "chatwoot"
    assert row["evento"] == fixture(name)["event"]


@pytest.mark.parametrize(
    ("provider", "name"),
    [("evolution", "evolution_sendText_response_201_docs.json"),
     ("evolution", "evolution_connectionState_response_docs.json"),
     ("evolution", "evolution_error_instance_not_found_docs.json"),
     ("zapi", "zapi_send_text_response_200.json")],
)  # fmt: skip
async def test_rest_responses_are_not_webhooks(
    client: httpx.AsyncClient, app: App, provider: str, name: str
) -> None:
    r = await client.post(f"/webhooks/{provider}", content=(FIXTURES / name).read_bytes(),
                          headers=AUTH)  # fmt: skip
    assert r.status_code == 400 and r.json()["status"] == "error"
    assert await rows(app) == []


# --- dedupe ------------------------------------------------------------------------


async def test_100_concurrent_posts_of_one_message_store_it_once(
    client: httpx.AsyncClient, app: App
) -> None:
    body = (FIXTURES / "evolution_messages_upsert_text.json").read_bytes()
    answers = await asyncio.gather(
        *(client.post("/webhooks/evolution", content=body, headers=AUTH) for _ in range(100))
    )
    assert all(a.status_code == 200 for a in answers)
    statuses = [a.json()["status"] for a in answers]
    assert statuses.count("accepted") == 1
    assert [a.json() for a in answers if a.json()["status"] != "accepted"] == [
        {"status": "ignored", "reason": "duplicate"}
    ] * 99
    assert len(await rows(app)) == 1


# --- auth ---------------------------------------------------------------------------


def evolution_jwt(key: str, now: float, ttl: int = 600) -> str:
    claims = {"iat": int(now), "exp": int(now) + ttl, "app": "evolution", "action": "webhook"}
    return jwt.encode(claims, key, algorithm="HS256")


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-Webhook-Token": "wrong"}, {"Authorization": "Bearer wrong"},
     {"X-Webhook-Token": TOKEN[:-1]}],
)  # fmt: skip
async def test_wrong_or_missing_secret_is_401_and_nothing_stored(
    client: httpx.AsyncClient, app: App, headers: dict[str, str]
) -> None:
    body = (FIXTURES / "evolution_messages_upsert_text.json").read_bytes()
    for provider in ("evolution", "zapi"):
        r = await client.post(f"/webhooks/{provider}", content=body, headers=headers)
        assert r.status_code == 401
    assert await rows(app) == []


async def test_evolution_bearer_jwt_is_verified(
    client: httpx.AsyncClient, app: App, clock: FrozenClock
) -> None:
    body = (FIXTURES / "evolution_messages_upsert_text.json").read_bytes()
    now = clock.now().timestamp()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short key for HS512
        hs512 = jwt.encode({"exp": int(now) + 60}, TOKEN, algorithm="HS512")
    bad = [
        evolution_jwt("another-key-of-at-least-32-bytes-long", now),
        evolution_jwt(TOKEN, now - 1200),  # expired
        hs512,
        jwt.encode({"iat": int(now)}, TOKEN, algorithm="HS256"),  # no exp
    ]
    for token in bad:
        r = await client.post("/webhooks/evolution", content=body,
                              headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        assert r.status_code == 401, token
    assert await rows(app) == []
    good = {"Authorization": f"Bearer {evolution_jwt(TOKEN, now)}"}
    r = await client.post("/webhooks/evolution", content=body, headers=good)
    assert r.status_code == 200 and len(await rows(app)) == 1


async def test_chatwoot_signature_is_verified(
    client: httpx.AsyncClient, app: App, clock: FrozenClock
) -> None:
    raw = (FIXTURES / "chatwoot_message_created.json").read_bytes()
    headers = signed(clock, raw)
    tampered = raw.replace(b'"hi"', b'"hj"')
    assert (await client.post("/webhooks/chatwoot", content=tampered,
                              headers=headers)).status_code == 401  # fmt: skip
    assert (await client.post("/webhooks/chatwoot", content=raw)).status_code == 401
    old = signed(FrozenClock(clock.now().replace(year=2025)), raw)
    assert (await client.post("/webhooks/chatwoot", content=raw, headers=old)).status_code == 401
    assert await rows(app) == []
    assert (
        await client.post("/webhooks/chatwoot", content=raw, headers=headers)
    ).status_code == 200


async def test_without_a_configured_token_webhooks_are_open(app: App, settings: Settings) -> None:
    app.settings = settings.model_copy(update={"webhook_token": None})
    transport = httpx.ASGITransport(app=create_app(julia=app))
    async with httpx.AsyncClient(transport=transport, base_url="http://shim") as c:
        body = (FIXTURES / "zapi_on_message_received_text.json").read_bytes()
        assert (await c.post("/webhooks/zapi", content=body)).status_code == 200


# --- bad input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"", b"[]", b"null", b'"text"', b"\xff\xfe", b'{"event": "messages.upsert"}',
     b'{"event": "messages.upsert", "data": {"key": {"remoteJid": "x@s.whatsapp.net"}}}',
     b'{"event": "messages.upsert", "data": {"key": {"id": "A", "remoteJid": "5511987654321'
     b'@s.whatsapp.net"}, "message": {"conversation": "nul \\u0000 here"}}}',
     b'{"event": "connection.update", "data": {"state": 3}}'],
)  # fmt: skip
async def test_malformed_body_is_400_and_nothing_stored(
    client: httpx.AsyncClient, app: App, body: bytes
) -> None:
    r = await client.post("/webhooks/evolution", content=body, headers=AUTH)
    assert r.status_code == 400, r.text
    assert r.json()["status"] == "error" and r.json()["reason"]
    assert await rows(app) == []


async def test_10_mb_body_is_413_and_nothing_stored(client: httpx.AsyncClient, app: App) -> None:
    body = fixture("evolution_messages_upsert_text.json")
    body["data"]["message"]["conversation"] = "x" * 10_000_000
    r = await client.post("/webhooks/evolution", json=body, headers=AUTH)
    assert r.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: streamed
        for _ in range(10):
            yield b" " * 1_000_000

    r = await client.post("/webhooks/zapi", content=chunks(), headers=AUTH)
    assert r.status_code == 413
    assert await rows(app) == []


async def test_unknown_event_is_acknowledged_and_ignored(
    client: httpx.AsyncClient, app: App
) -> None:
    for path, body in [
        ("/webhooks/evolution", {"event": "presence.update", "data": {"id": "x"}}),
        ("/webhooks/evolution/chats-upsert", {"data": [{"id": "x"}]}),
        ("/webhooks/zapi", {"type": "PresenceChatCallback", "phone": "5544999999999"}),
    ]:
        r = await client.post(path, json=body, headers=AUTH)
        assert r.status_code == 200
        assert r.json() == {"status": "ignored", "reason": "event not handled"}
    assert await rows(app) == []


async def test_per_event_url_suffix_is_understood(client: httpx.AsyncClient, app: App) -> None:
    body = fixture("evolution_messages_upsert_text.json")
    del body["event"]
    r = await client.post("/webhooks/evolution/messages-upsert", json=body, headers=AUTH)
    assert r.status_code == 200 and r.json()["status"] == "accepted"


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "event",
                    "data",
                    "key",
                    "id",
                    "remoteJid",
                    "message",
                    "type",
                    "messageId",
                    "phone",
                    "text",
                    "conversation",
                    "instance",
                    "ids",
                    "status",
                    "state",
                    "fromMe",
                    "conversation",
                ]
            )
            | st.text(max_size=5),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@hsettings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=_json, provider=st.sampled_from(["evolution", "zapi", "chatwoot"]))
async def test_nothing_a_sender_posts_is_a_500(
    client: httpx.AsyncClient, body: Any, provider: str
) -> None:
    headers = AUTH if provider != "chatwoot" else {}
    r = await client.post(f"/webhooks/{provider}", json=body, headers=headers)
    assert r.status_code in (200, 400, 401), r.text


# --- health and metrics ----------------------------------------------------------------


async def test_health_ready_and_metrics(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}
    ready = await client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["postgres"] == "ok"
    labels = {"provider": "evolution", "event": "none", "outcome": "400"}

    def rejected() -> float:
        return REGISTRY.get_sample_value("julia_webhooks_received_total", labels) or 0.0

    before = rejected()
    r = await client.post("/webhooks/evolution", content=b"{", headers=AUTH)
    assert r.status_code == 400 and len(r.headers["x-trace-id"]) == 16
    metrics = (await client.get("/metrics")).text
    assert rejected() == before + 1  # counted once, by julia.metrics only
    assert 'julia_webhooks_received_total{event="none",outcome="400",provider="evolution"}' in (
        metrics
    )
    assert "julia_webhook_seconds_count" in metrics and "julia_webhooks_total" not in metrics


async def test_redis_down_keeps_accepting_but_is_not_ready(settings: Settings) -> None:
    down = settings.model_copy(update={"redis_url": SecretStr("redis://127.0.0.1:1/0")})
    async with App.open(down, clock=FrozenClock()) as julia:
        transport = httpx.ASGITransport(app=create_app(julia=julia))
        async with httpx.AsyncClient(transport=transport, base_url="http://shim") as c:
            ready = await c.get("/health/ready")
            assert ready.status_code == 503 and ready.json()["redis"].startswith("unavailable")
            body = (FIXTURES / "evolution_messages_upsert_text.json").read_bytes()
            r = await c.post("/webhooks/evolution", content=body, headers=AUTH)
            assert r.status_code == 200 and r.json()["status"] == "accepted"


def test_shim_serve_with_uvicorn(env: dict[str, str], tmp_path: Path) -> None:
    """``julia shim serve`` answers over real HTTP (a subprocess on loopback)."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    julia = Path(sys.executable).parent / "julia"
    proc = subprocess.Popen(
        [str(julia), "shim", "serve", "--port", str(port)],
        env=env | {"JULIA_WEBHOOK_TOKEN": TOKEN},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "shim did not start"
                time.sleep(0.1)
        assert r.status_code == 200
        body = (FIXTURES / "zapi_on_message_received_text.json").read_bytes()
        r = httpx.post(f"http://127.0.0.1:{port}/webhooks/zapi", content=body, headers=AUTH)
        assert r.json()["status"] == "accepted"
        r = httpx.post(f"http://127.0.0.1:{port}/webhooks/zapi", content=body)
        assert r.status_code == 401
    finally:
        proc.terminate()
        proc.wait(10)


async def test_group_commit_keeps_one_bad_body_from_failing_its_batch(
    client: httpx.AsyncClient, app: App
) -> None:
    def body(i: int, text: str) -> bytes:
        b = fixture("evolution_messages_upsert_text.json")
        b["data"]["key"]["id"] = f"BATCH{i}"
        b["data"]["message"]["conversation"] = text
        return json.dumps(b).encode()

    bodies = [body(i, "oi") for i in range(50)] + [body(99, "nul \u0000 here")]
    answers = await asyncio.gather(
        *(client.post("/webhooks/evolution", content=b, headers=AUTH) for b in bodies)
    )
    assert [a.status_code for a in answers] == [200] * 50 + [400]
    stored = await rows(app)
    assert [r["provider_message_id"] for r in stored] == [f"BATCH{i}" for i in range(50)]


async def test_postgres_down_is_503_never_500(settings: Settings) -> None:
    async with App.open(settings, clock=FrozenClock()) as julia:
        await julia.pool.close()  # Postgres "goes away"
        transport = httpx.ASGITransport(app=create_app(julia=julia))
        async with httpx.AsyncClient(transport=transport, base_url="http://shim") as c:
            ready = await c.get("/health/ready")
            assert ready.status_code == 503 and ready.json()["postgres"].startswith("unavailable")
            body = (FIXTURES / "evolution_messages_upsert_text.json").read_bytes()
            r = await c.post("/webhooks/evolution", content=body, headers=AUTH)
            assert r.status_code == 503  # the gateway retries later
            close = (FIXTURES / "evolution_connection_update_close.json").read_bytes()
            r = await c.post("/webhooks/evolution", content=close, headers=AUTH)
            assert r.status_code == 503


@pytest.mark.slow
def test_sandbox_to_shim_to_turn_over_real_http(env: dict[str, str], settings: Settings) -> None:
    """The sandbox gateway posts a doctor's message to ``julia shim serve`` (a real process);
    the consumer (real clock) turns it into a turn, calling the sandbox for presence."""
    import socket
    import subprocess
    import sys

    from julia.core.clock import Clock
    from julia.gateways import registry
    from julia.gateways.evolution import EvolutionGateway
    from julia.inbox import consumer
    from julia.sandbox.gateway import running

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    shim_url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "julia"), "shim", "serve", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{shim_url}/health", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "shim did not start"
                time.sleep(0.1)
        with running(webhook_url=f"{shim_url}/webhooks/evolution") as (sandbox_url, state):
            sent = httpx.post(f"{sandbox_url}/_sandbox/incoming",
                              json={"instance": "chip1", "number": "5511987654321",
                                    "text": "oi, tem plantão sábado?"})  # fmt: skip
            assert sent.json()["webhook_status"] == 200
            again = httpx.post(f"{sandbox_url}/_sandbox/incoming",
                               json={"instance": "chip1", "number": "5511987654321",
                                     "text": "x", "id": sent.json()["payload"]["data"]["key"][
                                         "id"]})  # fmt: skip
            assert again.json()["webhook_status"] == 200  # a retry: duplicate, still 200

            async def process() -> consumer.Turn | None:
                quick = settings.model_copy(
                    update={"inbox_debounce_s": 0.0, "business_days": list(range(7)),
                            "business_hours_start": "00:00", "business_hours_end": "23:59:59"}
                )  # fmt: skip
                async with App.open(quick, clock=Clock()) as app:
                    app.extensions["gateways"] = {
                        "evolution": EvolutionGateway(registry.session(app), sandbox_url, None)
                    }
                    return await consumer.step(app, "e2e")

            turn = asyncio.run(process())
        assert turn is not None and turn.status == "aguardando_resposta"
        assert len(turn.mensagens) == 1
        # the turn reached the sandbox (a failed presence call degrades silently)
        assert (state.calls.get("markMessageAsRead"), state.calls.get("sendPresence")) == (1, 1)
    finally:
        proc.terminate()
        proc.wait(10)
