"""Hostile and broken senders (issue 12): what any bytes a webhook carries can and cannot do."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
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


# --- item 6: open by default ----------------------------------------------------------


def test_shim_serve_refuses_an_unsecured_route_off_loopback(env: dict[str, str]) -> None:
    """A real process with a timeout: were the refusal gone, it would serve, not hang a run."""
    import subprocess
    import sys

    julia = Path(sys.executable).parent / "julia"
    r = subprocess.run(
        [str(julia), "shim", "serve", "--host", "0.0.0.0", "--port", "0"],
        env=env | {"JULIA_WEBHOOK_TOKEN": TOKEN},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 78
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "/webhooks/chatwoot" in lines[0] and "--insecure" in lines[0]


def test_loopback_is_told_from_other_addresses() -> None:
    from julia_cli.commands.shim import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.5")
    assert not is_loopback("shim.example.com")


async def test_the_shim_warns_once_per_unsecured_route(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    from shim.app import create_app

    half = settings.model_copy(update={"chatwoot_webhook_secret": None})
    shim = create_app(half.model_copy(update={"log_format": "json"}))
    async with shim.router.lifespan_context(shim):
        pass
    warnings = [
        json.loads(line)
        for line in capsys.readouterr().err.splitlines()
        if "shim.unauthenticated" in line
    ]
    assert [w["route"] for w in warnings] == ["/webhooks/chatwoot"]


# --- item 7: headers, slow bodies, metrics labels -------------------------------------


async def test_oversized_or_too_many_headers_are_431(client: httpx.AsyncClient, app: App) -> None:
    body = (FIXTURES / "zapi_on_message_received_text.json").read_bytes()
    big = AUTH | {"X-Junk": "x" * 1_000_000}
    many = AUTH | {f"X-Junk-{i}": "x" for i in range(150)}
    for headers in (big, many):
        r = await client.post("/webhooks/zapi", content=body, headers=headers)
        assert r.status_code == 431
    assert await count(app) == 0


async def test_a_slow_body_is_cut_off(settings: Settings, clock: FrozenClock) -> None:
    from shim.app import create_app

    slow = settings.model_copy(update={"webhook_read_timeout_s": 0.3})
    async with App.open(slow, clock=clock) as julia:

        async def trickle() -> Any:
            yield b'{"type": "ReceivedCallback", '
            await asyncio.sleep(2)
            yield b"}"

        transport = httpx.ASGITransport(app=create_app(julia=julia))
        async with httpx.AsyncClient(transport=transport, base_url="http://shim") as c:
            r = await c.post("/webhooks/zapi", content=trickle(), headers=AUTH)
        assert r.status_code == 408
        assert await count(julia) == 0


async def test_unknown_event_names_do_not_grow_the_metrics(client: httpx.AsyncClient) -> None:
    before = len((await client.get("/metrics")).text)
    for i in range(50):
        body = {"event": f"{i}-" + "e" * 20_000, "instance": "x", "data": {}}
        r = await client.post("/webhooks/evolution", json=body, headers=AUTH)
        assert r.status_code == 200
    metrics = (await client.get("/metrics")).text
    assert "eeeeeeeeee" not in metrics and len(metrics) < before + 5_000
    assert 'event="other"' in metrics


# --- item 10: a Postgres that does not answer ----------------------------------------


async def test_a_stalled_postgres_is_a_503_within_the_deadline(
    settings: Settings, clock: FrozenClock
) -> None:
    import psycopg
    from shim.app import create_app

    quick = settings.model_copy(
        update={"webhook_store_timeout_s": 0.5, "db_statement_timeout_s": 2.0}
    )
    async with App.open(quick, clock=clock) as julia:
        async with julia.pool.connection() as conn:
            cur = await conn.execute("SHOW statement_timeout")
            assert (await cur.fetchone())["statement_timeout"] == "2s"
        url = julia.endpoints.database_url
        transport = httpx.ASGITransport(app=create_app(julia=julia))
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://shim") as c,
            await psycopg.AsyncConnection.connect(url) as blocker,
        ):
            await blocker.execute("BEGIN")
            await blocker.execute("LOCK TABLE mensagens_recebidas IN ACCESS EXCLUSIVE MODE")
            bodies = [_upsert(i, "5511987654321@s.whatsapp.net") for i in range(5)]
            answers = await asyncio.wait_for(
                asyncio.gather(
                    *(c.post("/webhooks/evolution", content=b, headers=AUTH) for b in bodies)
                ),
                timeout=60,  # a hang guard only: without a deadline these wait for the lock
            )
            assert [a.status_code for a in answers] == [503] * 5
            await blocker.execute("ROLLBACK")
            r = await c.post(
                "/webhooks/evolution", content=_upsert(9, "5511987654321"), headers=AUTH
            )
            assert r.status_code == 200


# --- property: any mutation of a recorded body ----------------------------------------

_BODIES = {
    "evolution": ["evolution_messages_upsert_text.json", "evolution_messages_upsert_group.json",
                  "evolution_messages_upsert_audio.json", "evolution_messages_update.json",
                  "evolution_connection_update_close.json",
                  "evolution_messages_upsert_fromme_v1_8.json"],
    "zapi": ["zapi_on_message_received_text.json", "zapi_message_status_read.json",
             "zapi_disconnected.json"],
    "chatwoot": ["chatwoot_message_created.json", "chatwoot_conversation_status_changed.json"],
}  # fmt: skip
_CASES = [(provider, name) for provider, names in _BODIES.items() for name in names]
_TABLES = ("mensagens_recebidas", "mensagens_acks", "gateway_conexao_eventos")


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path inside a JSON value (dict keys and list indexes)."""
    out: list[tuple[Any, ...]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(
        value, list) else ()  # fmt: skip
    for k, v in items:
        out.append((*prefix, k))
        out.extend(_paths(v, (*prefix, k)))
    return out


#: Fields the parsers read as identities, phones, states and times: mutated more often.
_KEY_FIELDS = frozenset(
    {"event", "instance", "data", "key", "id", "remoteJid", "remoteJidAlt", "senderPn", "fromMe"}
    | {"message", "messageTimestamp", "status", "state", "statusReason", "keyId", "type"}
    | {"instanceId", "messageId", "phone", "ids", "momment", "participantPhone", "text"}
    | {"conversation", "meta", "sender", "phone_number", "account", "created_at", "content"}
)
_REPLACEMENTS = (
    st.none() | st.booleans() | st.integers() | st.integers(min_value=2**63)
    | st.floats() | st.text(max_size=30) | st.just("٥٥١١٩٨٧٦٥٤٣٢١@s.whatsapp.net")
    | st.just("１２３４５６７８９０") | st.just("\u0000") | st.just("x" * 3000)
    | st.lists(st.integers(), max_size=3) | st.dictionaries(st.text(max_size=3), st.none())
)  # fmt: skip


@st.composite
def _mutated(draw: st.DrawFn) -> tuple[str, Any]:
    provider, name = draw(st.sampled_from(_CASES))
    body = fixture(name)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = _paths(body)
        if not paths:
            break
        keyed = [p for p in paths if p[-1] in _KEY_FIELDS]
        path = draw(st.sampled_from(keyed if keyed and draw(st.booleans()) else paths))
        parent = body
        for k in path[:-1]:
            parent = parent[k]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(_REPLACEMENTS)
    return provider, body


async def _total(app: App) -> int:
    return sum([await count(app, t) for t in _TABLES])


_seq = iter(range(10**9))


@hsettings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=_mutated())
async def test_no_mutation_of_a_recorded_body_is_a_5xx_or_a_half_write(
    client: httpx.AsyncClient, app: App, case: tuple[str, Any]
) -> None:
    provider, body = case
    raw = json.dumps(body).encode()  # floats nan/inf become NaN/Infinity: JSON's extensions
    headers = dict(AUTH)
    if provider == "chatwoot":
        ts = str(int(app.clock.now().timestamp()))
        signature = chatwoot_signature(CHATWOOT_SECRET, ts, raw)
        headers = {"X-Chatwoot-Timestamp": ts, "X-Chatwoot-Signature": signature}
    headers["Content-Type"] = "application/json"
    before = await _total(app)
    bad, good = await asyncio.gather(
        client.post(f"/webhooks/{provider}", content=raw, headers=headers),
        client.post("/webhooks/evolution", content=_upsert(10**6 + next(_seq), "5511987654321"),
                    headers=AUTH),
    )  # fmt: skip
    assert bad.status_code < 500, bad.text
    assert good.status_code == 200 and good.json()["status"] == "accepted"
    if bad.status_code != 200:  # rejected: nothing of it stored, only the good one
        assert await _total(app) == before + 1
