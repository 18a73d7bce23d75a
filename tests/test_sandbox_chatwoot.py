"""The Chatwoot sandbox keeps its contract: API shapes, recorded calls, signed webhooks
the shim's verification accepts, operator actions, faults."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from julia.inbox import chatwoot_signature
from julia.sandbox import chatwoot, server

SECRET = "s3cret"
API = "/api/v1/accounts/1"


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    got: list[dict[str, Any]] = []

    async def hook(request: Request) -> Response:
        got.append({"headers": dict(request.headers), "raw": await request.body()})
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    with server.in_thread(app, "127.0.0.1", 0, "receiver") as port:
        yield f"http://127.0.0.1:{port}/hook", got


def test_the_sandbox_speaks_chatwoot_and_signs_its_webhooks(
    receiver: tuple[str, list[dict[str, Any]]],
) -> None:
    hook, got = receiver
    with chatwoot.running(webhook_url=hook, secret=SECRET, api_token="tok") as (url, _):
        h = {"api_access_token": "tok"}
        assert httpx.get(f"{url}{API}/contacts/search?q=1").status_code == 401
        contact = httpx.post(f"{url}{API}/contacts", headers=h,
                             json={"inbox_id": 1, "name": "Ana", "phone_number": "+5511912345678"}
                             ).json()["payload"]  # fmt: skip
        source = contact["contact_inbox"]["source_id"]
        found = httpx.get(f"{url}{API}/contacts/search", params={"q": "+5511912345678"}, headers=h)
        assert found.json()["payload"][0]["id"] == contact["contact"]["id"]
        conv = httpx.post(f"{url}{API}/conversations", headers=h,
                          json={"source_id": source, "inbox_id": 1,
                                "contact_id": contact["contact"]["id"]}).json()["id"]  # fmt: skip
        msg = httpx.post(f"{url}{API}/conversations/{conv}/messages", headers=h,
                         json={"content": "oi", "message_type": "incoming"}).json()  # fmt: skip
        assert msg["message_type"] == 0 and isinstance(msg["id"], int)
        httpx.post(f"{url}{API}/conversations/{conv}/labels", headers=h, json={"labels": ["a"]})
        r = httpx.post(f"{url}{API}/conversations/{conv}/labels", headers=h, json={"labels": ["b"]})
        assert r.json()["payload"] == ["b"]  # replaces the whole set, as Chatwoot does
        calls = httpx.get(f"{url}/_sandbox/calls").json()
        assert {"method", "path", "json"} <= set(calls[1])
        assert calls[1]["path"] == f"{API}/contacts" and calls[1]["json"]["name"] == "Ana"
        [listed] = httpx.get(f"{url}/_sandbox/conversations").json()
        assert listed["id"] == conv and listed["phone_number"] == "+5511912345678"
        r = httpx.post(f"{url}/_sandbox/reply", json={"conversation_id": conv, "content": "olá"})
        assert r.json()["webhook_status"] == 200
        r = httpx.post(f"{url}/_sandbox/resolve", json={"conversation_id": conv})
        assert r.json()["webhook_status"] == 200
        r = httpx.post(f"{url}/_sandbox/unlabel", json={"conversation_id": conv, "label": "b"})
        assert r.json()["webhook_status"] == 200
        httpx.post(f"{url}/_sandbox/faults", json={"status": 429, "error_rate": 1.0})
        assert httpx.get(f"{url}{API}/conversations/{conv}", headers=h).status_code == 429
        httpx.delete(f"{url}/_sandbox/faults")
        assert httpx.get(f"{url}{API}/conversations/{conv}", headers=h).status_code == 200
        deadline = time.monotonic() + 5
        while len(got) < 7 and time.monotonic() < deadline:
            time.sleep(0.02)
    events = []
    for d in got:
        ts = d["headers"]["x-chatwoot-timestamp"]
        assert d["headers"]["x-chatwoot-signature"] == chatwoot_signature(SECRET, ts, d["raw"])
        assert d["headers"]["x-chatwoot-delivery"]
        events.append(httpx.Response(200, content=d["raw"]).json()["event"])
    assert events.count("message_created") == 2 and "conversation_status_changed" in events
    assert "conversation_updated" in events and "conversation_created" in events


def test_julia_sandbox_chatwoot_is_a_command(cli: Any) -> None:
    r = cli("sandbox", "chatwoot", "--help")
    assert r.exit_code == 0 and "--webhook-url" in r.stdout and "--port" in r.stdout
