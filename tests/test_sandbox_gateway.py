"""The sandbox gateway over real HTTP: Evolution shapes, faults, history, webhooks."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from julia.sandbox.gateway import running

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A webhook receiver (like the shim) that records every POST body."""
    got: list[dict[str, Any]] = []

    async def hook(request: Request) -> JSONResponse:
        got.append(await request.json())
        return JSONResponse({"status": "ok"})

    server = uvicorn.Server(
        uvicorn.Config(Starlette(routes=[Route("/webhook", hook, methods=["POST"])]),
                       port=0, log_level="warning")
    )  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/webhook", got
    server.should_exit = True
    thread.join(5)


def test_send_text_answers_like_evolution_and_is_kept(sandbox_gateway: str) -> None:
    r = httpx.post(
        f"{sandbox_gateway}/message/sendText/chip1", json={"number": "5511999990001", "text": "Oi"}
    )
    assert r.status_code == 201
    body = r.json()
    docs = json.loads((FIXTURES / "evolution_sendText_response_201_docs.json").read_text())
    assert set(docs) <= set(body)  # key, message, messageTimestamp, status
    assert body["key"]["remoteJid"] == "5511999990001@s.whatsapp.net" and body["key"]["fromMe"]
    assert body["status"] == "PENDING" and body["message"] == {"conversation": "Oi"}
    [m] = httpx.get(f"{sandbox_gateway}/_sandbox/messages").json()
    assert {k: m[k] for k in ("id", "instance", "number", "text")} == {
        "id": body["key"]["id"], "instance": "chip1", "number": "5511999990001", "text": "Oi",
    }  # fmt: skip
    assert httpx.get(f"{sandbox_gateway}/_sandbox/messages?instance=other").json() == []
    assert httpx.delete(f"{sandbox_gateway}/_sandbox/messages").status_code == 200
    assert httpx.get(f"{sandbox_gateway}/_sandbox/messages").json() == []


def test_bad_bodies_get_evolution_400s(sandbox_gateway: str) -> None:
    r = httpx.post(f"{sandbox_gateway}/message/sendText/chip1", json={"number": "5511999990001"})
    assert r.status_code == 400 and r.json()["response"]["message"] == ["Text is required"]


def test_faults_per_instance_and_for_all_then_cleared(sandbox_gateway: str) -> None:
    def send(inst: str) -> int:
        body = {"number": "5511999990001", "text": "x"}
        return httpx.post(f"{sandbox_gateway}/message/sendText/{inst}", json=body).status_code

    httpx.post(f"{sandbox_gateway}/_sandbox/faults", json={"instance": "a", "status": 403})
    assert (send("a"), send("b")) == (403, 201)
    httpx.post(f"{sandbox_gateway}/_sandbox/faults", json={"status": 429})
    assert (send("a"), send("b")) == (403, 429)  # the instance's own fault wins
    httpx.post(f"{sandbox_gateway}/_sandbox/faults", json={"status": 500, "error_rate": 0.0})
    assert send("b") == 201
    assert httpx.delete(f"{sandbox_gateway}/_sandbox/faults").status_code == 200
    assert (send("a"), send("b")) == (201, 201)
    assert len(httpx.get(f"{sandbox_gateway}/_sandbox/messages").json()) == 4
    bad = httpx.post(f"{sandbox_gateway}/_sandbox/faults", json={"status": "x"})
    assert bad.status_code == 400


def test_api_key_is_enforced_when_set() -> None:
    with running(api_key="secret") as (url, _):
        r = httpx.get(f"{url}/instance/connectionState/x", headers={"apikey": "wrong"})
        assert r.status_code == 401 and r.json()["response"]["message"] == "Unauthorized"
        ok = httpx.get(f"{url}/instance/connectionState/x", headers={"apikey": "secret"})
        assert ok.json() == {"instance": {"instanceName": "x", "state": "open"}}


def test_incoming_messages_and_acks_are_posted_as_real_webhooks(
    receiver: tuple[str, list[dict[str, Any]]],
) -> None:
    url, got = receiver
    with running(webhook_url=url, auto_ack=True) as (base, _):
        r = httpx.post(
            f"{base}/_sandbox/incoming",
            json={"instance": "chip1", "number": "5511999990001", "text": "Tenho interesse"},
        )
        assert r.json()["webhook_status"] == 200
        sent = httpx.post(
            f"{base}/message/sendText/chip1", json={"number": "5511999990001", "text": "Ótimo!"}
        ).json()
        r = httpx.post(f"{base}/_sandbox/ack", json={"id": sent["key"]["id"], "status": "READ"})
        assert r.json()["webhook_status"] == 200
        for _ in range(200):  # the auto-ack is posted in the background
            if len(got) >= 3:
                break
            time.sleep(0.01)
    upsert = got[0]
    real = json.loads((FIXTURES / "evolution_messages_upsert_text.json").read_text())
    assert set(real) == set(upsert) and set(real["data"]) <= set(upsert["data"]) | {"contextInfo"}
    assert upsert["event"] == "messages.upsert" and upsert["instance"] == "chip1"
    assert upsert["data"]["key"]["remoteJid"] == "5511999990001@s.whatsapp.net"
    assert not upsert["data"]["key"]["fromMe"]
    assert upsert["data"]["message"]["conversation"] == "Tenho interesse"
    updates = [g for g in got if g["event"] == "messages.update"]
    real_update = json.loads((FIXTURES / "evolution_messages_update.json").read_text())
    assert all(set(real_update["data"]) == set(u["data"]) for u in updates)
    assert sorted(u["data"]["status"] for u in updates) == ["DELIVERY_ACK", "READ"]
    assert {u["data"]["keyId"] for u in updates} == {sent["key"]["id"]}
