"""Gateway adapters: the real client code against recorded payloads and the sandbox."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from julia.core.errors import (
    GatewayAuthError,
    GatewayBadRequest,
    GatewayClientError,
    GatewayError,
    GatewayForbidden,
    GatewayNetworkError,
    GatewayNotFound,
    GatewayRateLimited,
    GatewayServerError,
    GatewayTimeout,
    InvalidNumber,
)
from julia.gateways.evolution import EvolutionGateway
from julia.gateways.zapi import ZApiGateway

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def evolution(handler: Callable[[httpx.Request], httpx.Response]) -> EvolutionGateway:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return EvolutionGateway(client, "http://evo.test/", "KEY")


TEXT_REQUIRED = {
    "status": 400,
    "error": "Bad Request",
    "response": {"message": ["Text is required"]},
}
UNAUTHORIZED = {"status": 401, "error": "Unauthorized", "response": {"message": "Unauthorized"}}
CLOSED = {"status": 500, "error": "Internal Server Error",
          "response": {"message": ["Error: Connection Closed"]}}  # fmt: skip
INVALID_NUMBER = {
    "status": 400,
    "error": "Bad Request",
    "response": {
        "message": [{"jid": "33997329091@s.whatsapp.net", "exists": False, "number": "33997329091"}]
    },
}


@pytest.mark.parametrize(
    ("status", "body", "headers", "error", "retryable"),
    [
        (400, INVALID_NUMBER, {}, InvalidNumber, False),
        (400, TEXT_REQUIRED, {}, GatewayBadRequest, False),
        (401, UNAUTHORIZED, {}, GatewayAuthError, False),
        (403, {"status": 403, "error": "Forbidden", "response": {"message": ["x"]}}, {},
         GatewayForbidden, True),
        (404, fixture("evolution_error_instance_not_found_docs.json"), {}, GatewayNotFound, True),
        (429, {"status": 429}, {"retry-after": "7"}, GatewayRateLimited, True),
        (422, {"status": 422}, {}, GatewayClientError, False),
        (500, CLOSED, {}, GatewayServerError, True),
        (503, "upstream down", {}, GatewayServerError, True),
    ],
)  # fmt: skip
async def test_every_status_maps_to_its_typed_error(
    status: int, body: Any, headers: dict[str, str], error: type[GatewayError], retryable: bool
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status, text=body, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    with pytest.raises(error) as info:
        await evolution(handler).send_text("julia", "5511999990001", "oi")
    assert type(info.value) is error
    assert info.value.status == status and info.value.retryable is retryable
    assert not info.value.maybe_sent
    if status == 429:
        assert info.value.details["retry_after_s"] == 7.0
    if status == 404:
        assert "invalid-instance" in str(info.value)


@pytest.mark.parametrize(
    ("exc", "error", "maybe_sent"),
    [
        (httpx.ConnectTimeout("t"), GatewayTimeout, False),
        (httpx.ReadTimeout("t"), GatewayTimeout, True),
        (httpx.ConnectError("refused"), GatewayNetworkError, False),
        (httpx.RemoteProtocolError("dropped"), GatewayNetworkError, True),
    ],
)
async def test_transport_failures_say_whether_the_message_may_have_gone_out(
    exc: Exception, error: type[GatewayError], maybe_sent: bool
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    with pytest.raises(error) as info:
        await evolution(handler).send_text("julia", "5511999990001", "oi")
    assert info.value.maybe_sent is maybe_sent and info.value.retryable


async def test_send_text_wire_format_and_recorded_answer() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json=fixture("evolution_sendText_response_201_docs.json"))

    result = await evolution(handler).send_text(
        "minha instância", "553198296801", "Olá!", delay_ms=1200
    )
    assert result.provider_message_id == "BAE594145F4C59B4"
    [req] = seen
    assert req.method == "POST" and req.headers["apikey"] == "KEY"
    assert req.url.path == "/message/sendText/minha instância"
    assert json.loads(req.content) == {"number": "553198296801", "text": "Olá!", "delay": 1200}


async def test_connection_state_reads_the_documented_answer() -> None:
    gw = evolution(
        lambda r: httpx.Response(200, json=fixture("evolution_connectionState_response_docs.json"))
    )
    assert await gw.connection_state("teste-docs") == "open"


async def test_an_unreadable_2xx_is_a_server_error() -> None:
    gw = evolution(lambda r: httpx.Response(201, json={"unexpected": True}))
    with pytest.raises(GatewayServerError) as info:
        await gw.send_text("julia", "5511999990001", "oi")
    assert info.value.maybe_sent  # accepted with an answer we cannot read: reconcile it


async def test_every_evolution_call_against_the_sandbox(sandbox_gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        gw = EvolutionGateway(http, sandbox_gateway, "any-key")
        await http.post(
            f"{sandbox_gateway}/_sandbox/numbers", json={"not_on_whatsapp": ["5511900000001"]}
        )
        sent = await gw.send_text("chip-a", "5511999990001", "olá")
        await gw.send_presence("chip-a", "5511999990001", "composing", 500)
        await gw.mark_read("chip-a", "5511999990001@s.whatsapp.net", "ABC")
        assert await gw.connection_state("chip-a") == "open"
        assert await gw.check_numbers("chip-a", ["5511999990001", "5511900000001"]) == {
            "5511999990001": True,
            "5511900000001": False,
        }
        history = await gw.find_sent("chip-a", "5511999990001")
        assert history is not None
        assert [(h.provider_message_id, h.text) for h in history] == [
            (sent.provider_message_id, "olá")
        ]
        assert await gw.find_sent("chip-a", "5511999990002") == []
        [inst] = await gw.list_instances()
        assert (inst.name, inst.state) == ("chip-a", "open")
        await http.post(
            f"{sandbox_gateway}/_sandbox/faults", json={"instance": "chip-a", "disconnected": True}
        )
        assert await gw.connection_state("chip-a") == "close"
        with pytest.raises(GatewayServerError, match="Connection Closed"):
            await gw.send_text("chip-a", "5511999990001", "de novo")
        assert await gw.connection_state("chip-b") == "open"  # the fault is per instance


async def test_zapi_send_text_uses_the_instance_token_and_client_token() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/status"):
            return httpx.Response(200, json={"connected": False, "error": "You are not connected."})
        return httpx.Response(200, json=fixture("zapi_send_text_response_200.json"))

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        gw = ZApiGateway(http, "https://api.z-api.io", {"INST1": "TOK1"}, "CLIENT")
        await gw.send_presence("INST1", "5511999990001", "composing", 3000)
        result = await gw.send_text("INST1", "5511999990001", "oi")
        assert result.provider_message_id == "D241XXXX732339502B68"
        assert await gw.connection_state("INST1") == "close"
        assert await gw.find_sent("INST1", "5511999990001") is None
    req = seen[0]
    assert req.url.path == "/instances/INST1/token/TOK1/send-text"
    assert req.headers["Client-Token"] == "CLIENT"
    assert json.loads(req.content) == {"phone": "5511999990001", "message": "oi", "delayTyping": 3}


async def test_zapi_errors_map_the_same_way() -> None:
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(
            lambda r: httpx.Response(403, json={"error": "null not allowed"})
        )
    ) as http:
        gw = ZApiGateway(http, "https://api.z-api.io", {"I": "T"}, None)
        with pytest.raises(GatewayForbidden, match="null not allowed"):
            await gw.send_text("I", "5511999990001", "oi")


async def test_an_unreachable_gateway_error_names_where_it_went() -> None:
    """A worker pointed at the wrong port says which URL it tried (host and port only: a
    Z-API path carries its token)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    async with httpx.AsyncClient() as http:
        with pytest.raises(GatewayNetworkError) as info:
            await EvolutionGateway(http, f"http://127.0.0.1:{port}", "KEY").send_text(
                "julia", "5511999990001", "oi"
            )
        assert f"http://127.0.0.1:{port}" in str(info.value)
        with pytest.raises(GatewayNetworkError) as info:
            await ZApiGateway(http, f"http://127.0.0.1:{port}", {"I": "TOK1SECRET"}, "C").send_text(
                "I", "5511999990001", "oi"
            )
        assert f"127.0.0.1:{port}" in str(info.value) and "TOK1SECRET" not in str(info.value)


def test_the_default_evolution_url_is_the_sandbox_gateway() -> None:
    import inspect

    from julia.settings import Settings
    from julia_cli.commands import sandbox

    port = inspect.signature(sandbox.gateway_).parameters["port"].default
    assert Settings.model_fields["evolution_url"].default == f"http://127.0.0.1:{port}"
