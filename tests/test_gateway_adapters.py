"""Gateway adapters: the real client code over real HTTP, against recorded payloads and the
sandbox. A gateway is replaced only at its edge: a small HTTP server in this process
(uvicorn in a thread) answers what each test sets and records what it received; what no
well-behaved server does (dropping, resetting, dripping) a bare TCP server does."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from julia.core.app import App
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
from julia.gateways import base, registry
from julia.gateways.evolution import EvolutionGateway
from julia.gateways.zapi import ZApiGateway
from julia.sandbox.server import in_thread
from julia.settings import Settings

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


# --- the gateway's edge ---------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One request as the edge received it."""

    method: str
    path: str  # decoded
    raw_path: str  # as it went on the wire
    headers: dict[str, str]  # names in lower case
    body: Any  # JSON, None when empty


#: status, body (JSON; a str is sent as text; None sends no body), headers
Reply = tuple[int, Any, dict[str, str]]


@dataclass
class Edge:
    """A gateway's HTTP edge: ``reply`` answers each request; ``seen`` records them."""

    url: str = ""
    reply: Callable[[Seen], Reply] = lambda seen: (200, {}, {})
    delay_s: float = 0.0  # before answering (the request is already recorded)
    seen: list[Seen] = field(default_factory=list)

    def answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.reply = lambda seen: (status, body, headers or {})

    def reset(self) -> None:
        self.answer(200, {})
        self.delay_s = 0.0
        self.seen.clear()

    async def handle(self, request: Request) -> Response:
        raw = await request.body()
        seen = Seen(
            request.method, request.url.path, request.scope["raw_path"].decode(),
            dict(request.headers), json.loads(raw) if raw else None,
        )  # fmt: skip
        self.seen.append(seen)
        status, body, headers = self.reply(seen)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if body is None:
            return Response(status_code=status, headers=headers)
        if isinstance(body, str):
            return PlainTextResponse(body, status, headers)
        return JSONResponse(body, status, headers)


@pytest.fixture(scope="module")
def edge_server() -> Iterator[Edge]:
    edge = Edge()
    methods = ["GET", "POST", "PUT", "DELETE"]
    app = Starlette(routes=[Route("/{path:path}", edge.handle, methods=methods)])
    with in_thread(app, "127.0.0.1", 0, "gateway edge") as port:
        edge.url = f"http://127.0.0.1:{port}"
        yield edge


@pytest.fixture
def edge(edge_server: Edge) -> Edge:
    edge_server.reset()
    return edge_server


@pytest.fixture(autouse=True)
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shell's proxy settings would route 127.0.0.1 through them: none here."""
    for name in list(os.environ):
        if name.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
            monkeypatch.delenv(name)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with base.session(10) as session:
        yield session


def evolution(http: aiohttp.ClientSession, url: str, timeout_s: float = 15) -> EvolutionGateway:
    return EvolutionGateway(http, url + "/", "KEY", timeout_s=timeout_s)


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One whole HTTP/1.1 request (head and ``Content-Length`` body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + await reader.readexactly(length)


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_server(handle: Handler) -> AsyncIterator[str]:
    """A bare TCP server in this loop; yields its base URL. Its connections end with it."""
    tasks: set[asyncio.Task[Any]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client gave up, or the test is over
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed once the block ends: nothing listens there


# --- answers ----------------------------------------------------------------------------

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
    edge: Edge,
    http: aiohttp.ClientSession,
    status: int,
    body: Any,
    headers: dict[str, str],
    error: type[GatewayError],
    retryable: bool,
) -> None:
    edge.answer(status, body, headers)
    with pytest.raises(error) as info:
        await evolution(http, edge.url).send_text("julia", "5511999990001", "oi")
    assert type(info.value) is error
    assert info.value.status == status and info.value.retryable is retryable
    assert not info.value.maybe_sent
    if status == 429:
        assert info.value.details["retry_after_s"] == 7.0
    if status == 404:
        assert "invalid-instance" in str(info.value)
    if status == 503:
        assert "upstream down" in str(info.value)


# --- transport failures: each one real ---------------------------------------------------


async def refused(http: aiohttp.ClientSession, edge: Edge) -> None:
    await evolution(http, f"http://127.0.0.1:{closed_port()}").send_text("julia", "5511", "oi")


async def read_timeout(http: aiohttp.ClientSession, edge: Edge) -> None:
    """The gateway read the request and answers after our read timeout (0.2 s; the hard
    deadline, 0.4 s, comes later)."""
    edge.delay_s = 1.0
    try:
        await evolution(http, edge.url, timeout_s=0.2).send_text("julia", "5511", "oi")
    finally:
        assert len(edge.seen) == 1  # it did reach the gateway


async def _read_then(
    http: aiohttp.ClientSession, close: Callable[[asyncio.StreamWriter], None]
) -> None:
    """One send to a server that reads the request whole, then ``close``-s without answering."""
    requests: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await read_request(reader))
        close(writer)

    async with raw_server(handle) as url:
        try:
            await evolution(http, url).send_text("julia", "5511", "oi")
        finally:
            assert len(requests) == 1


async def dropped(http: aiohttp.ClientSession, edge: Edge) -> None:
    """The connection closes once the request was read, before any answer."""
    await _read_then(http, lambda writer: None)  # the server's handler returns: it closes


async def reset(http: aiohttp.ClientSession, edge: Edge) -> None:
    """The connection is reset (RST) once the request was read."""

    def rst(writer: asyncio.StreamWriter) -> None:
        linger_0 = struct.pack("ii", 1, 0)  # close with RST, not FIN
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger_0)
        writer.transport.abort()

    await _read_then(http, rst)


async def pool_wait(http: aiohttp.ClientSession, edge: Edge) -> None:
    """The pool's one connection is held by a slow call; the next waits for it past its
    connect timeout (0.1 s) and never leaves."""
    arrived, release = asyncio.Event(), asyncio.Event()
    requests: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await read_request(reader))
        arrived.set()
        await release.wait()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 2\r\n\r\n{}")  # fmt: skip
        await writer.drain()

    async with raw_server(handle) as url, base.session(1) as one:
        slow = asyncio.create_task(evolution(one, url).connection_state("a"))
        await arrived.wait()
        try:
            await evolution(one, url, timeout_s=0.1).send_text("julia", "5511", "oi")
        finally:
            release.set()
            assert await slow == "unknown"
            assert len(requests) == 1  # the send never reached the gateway


async def connect_timeout(http: aiohttp.ClientSession, edge: Edge) -> None:
    """A listener whose accept queue is full: Linux drops the SYN, the TCP connect hangs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)  # room for one connection, never accepted
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=1):  # fills it
            await evolution(http, f"http://127.0.0.1:{port}", timeout_s=0.2).send_text(
                "julia", "5511", "oi"
            )


async def slow_drip(http: aiohttp.ClientSession, edge: Edge) -> None:
    """An answer arriving a byte every 0.05 s: each within the read timeout (0.3 s), the
    whole past the hard deadline (0.6 s), which ends it."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n")  # fmt: skip
        for _ in range(1000):
            writer.write(b" ")
            await writer.drain()
            await asyncio.sleep(0.05)

    async with raw_server(handle) as url:
        await evolution(http, url, timeout_s=0.3).send_text("julia", "5511", "oi")


linux_only = pytest.mark.skipif(
    sys.platform != "linux", reason="a full accept queue drops SYNs on Linux"
)


@pytest.mark.parametrize(
    ("failure", "error", "maybe_sent", "cause"),
    [
        (refused, GatewayNetworkError, False, aiohttp.ClientConnectorError),
        (pool_wait, GatewayTimeout, False, aiohttp.ConnectionTimeoutError),
        pytest.param(connect_timeout, GatewayTimeout, False, aiohttp.ConnectionTimeoutError,
                     marks=linux_only),
        (read_timeout, GatewayTimeout, True, aiohttp.SocketTimeoutError),
        (dropped, GatewayNetworkError, True, aiohttp.ServerDisconnectedError),
        (reset, GatewayNetworkError, True, aiohttp.ClientOSError),
        (slow_drip, GatewayTimeout, True, TimeoutError),
    ],
    ids=lambda v: v.__name__ if callable(v) and not isinstance(v, type) else None,
)  # fmt: skip
async def test_transport_failures_say_whether_the_message_may_have_gone_out(
    edge: Edge,
    http: aiohttp.ClientSession,
    failure: Callable[[aiohttp.ClientSession, Edge], Awaitable[None]],
    error: type[GatewayError],
    maybe_sent: bool,
    cause: type[BaseException],
) -> None:
    with pytest.raises(error) as info:
        await failure(http, edge)
    assert type(info.value) is error
    assert info.value.maybe_sent is maybe_sent and info.value.retryable
    assert isinstance(info.value.__cause__, cause)
    if cause is TimeoutError:  # the hard deadline's own, not one of aiohttp's timeouts
        assert type(info.value.__cause__) is TimeoutError
        assert "deadline 0.6 s" in str(info.value)


# --- the wire -------------------------------------------------------------------------------


async def test_send_text_wire_format_and_recorded_answer(
    edge: Edge, http: aiohttp.ClientSession
) -> None:
    edge.answer(201, fixture("evolution_sendText_response_201_docs.json"))
    result = await evolution(http, edge.url).send_text(
        "minha instância", "553198296801", "Olá!", delay_ms=1200
    )
    assert result.provider_message_id == "BAE594145F4C59B4"
    [req] = edge.seen
    assert req.method == "POST" and req.headers["apikey"] == "KEY"
    assert req.headers["content-type"].startswith("application/json")
    assert req.path == "/message/sendText/minha instância"
    assert req.raw_path == "/message/sendText/minha%20inst%C3%A2ncia"  # quoted once, not twice
    assert req.body == {"number": "553198296801", "text": "Olá!", "delay": 1200}


async def test_connection_state_reads_the_documented_answer(
    edge: Edge, http: aiohttp.ClientSession
) -> None:
    edge.answer(200, fixture("evolution_connectionState_response_docs.json"))
    assert await evolution(http, edge.url).connection_state("teste-docs") == "open"
    [req] = edge.seen
    assert (req.method, req.path, req.body) == ("GET", "/instance/connectionState/teste-docs", None)


async def test_an_unreadable_2xx_is_a_server_error(edge: Edge, http: aiohttp.ClientSession) -> None:
    edge.answer(201, {"unexpected": True})
    with pytest.raises(GatewayServerError) as info:
        await evolution(http, edge.url).send_text("julia", "5511999990001", "oi")
    assert info.value.maybe_sent  # accepted with an answer we cannot read: reconcile it
    edge.answer(201, "<html>not json</html>")
    with pytest.raises(GatewayServerError, match="unreadable answer") as info:
        await evolution(http, edge.url).send_text("julia", "5511999990001", "oi")
    assert info.value.maybe_sent


async def test_every_evolution_call_against_the_sandbox(
    sandbox_gateway: str, http: aiohttp.ClientSession
) -> None:
    gw = EvolutionGateway(http, sandbox_gateway, "any-key")
    async with httpx.AsyncClient(base_url=sandbox_gateway) as control:
        await control.post("/_sandbox/numbers", json={"not_on_whatsapp": ["5511900000001"]})
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
        await control.post("/_sandbox/faults", json={"instance": "chip-a", "disconnected": True})
        assert await gw.connection_state("chip-a") == "close"
        with pytest.raises(GatewayServerError, match="Connection Closed"):
            await gw.send_text("chip-a", "5511999990001", "de novo")
        assert await gw.connection_state("chip-b") == "open"  # the fault is per instance
        calls = (await control.get("/_sandbox/calls")).json()
    assert {k: calls[k] for k in ("sendText", "sendPresence", "markMessageAsRead")} == {
        "sendText": 2, "sendPresence": 1, "markMessageAsRead": 1,
    }  # fmt: skip


async def test_zapi_send_text_uses_the_instance_token_and_client_token(
    edge: Edge, http: aiohttp.ClientSession
) -> None:
    def reply(seen: Seen) -> Reply:
        if seen.path.endswith("/status"):
            return 200, {"connected": False, "error": "You are not connected."}, {}
        return 200, fixture("zapi_send_text_response_200.json"), {}

    edge.reply = reply
    gw = ZApiGateway(http, edge.url, {"INST1": "TOK1"}, "CLIENT")
    await gw.send_presence("INST1", "5511999990001", "composing", 3000)
    result = await gw.send_text("INST1", "5511999990001", "oi")
    assert result.provider_message_id == "D241XXXX732339502B68"
    assert await gw.connection_state("INST1") == "close"
    assert await gw.find_sent("INST1", "5511999990001") is None
    send, status = edge.seen
    assert (send.method, send.raw_path) == ("POST", "/instances/INST1/token/TOK1/send-text")
    assert send.headers["client-token"] == "CLIENT"
    assert send.body == {"phone": "5511999990001", "message": "oi", "delayTyping": 3}
    assert (status.method, status.raw_path) == ("GET", "/instances/INST1/token/TOK1/status")


async def test_zapi_errors_map_the_same_way(edge: Edge, http: aiohttp.ClientSession) -> None:
    edge.answer(403, {"error": "null not allowed"})
    gw = ZApiGateway(http, edge.url, {"I": "T"}, None)
    with pytest.raises(GatewayForbidden, match="null not allowed"):
        await gw.send_text("I", "5511999990001", "oi")
    [req] = edge.seen
    assert "client-token" not in req.headers  # none configured: none sent


async def test_an_unreachable_gateway_error_names_where_it_went(
    http: aiohttp.ClientSession,
) -> None:
    """A worker pointed at the wrong port says which URL it tried (host and port only: a
    Z-API path carries its token)."""
    port = closed_port()
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


async def test_a_redirect_is_not_followed(edge: Edge, http: aiohttp.ClientSession) -> None:
    """aiohttp follows redirects unless told not to (httpx never did): a send answered 302
    would come back as a GET elsewhere. A gateway that redirects a send has answered it."""

    def reply(seen: Seen) -> Reply:
        if seen.path == "/elsewhere":
            return 201, fixture("evolution_sendText_response_201_docs.json"), {}
        return 302, None, {"location": "/elsewhere"}

    edge.reply = reply
    with pytest.raises(GatewayServerError, match=r"without key\.id") as info:
        await evolution(http, edge.url).send_text("julia", "5511999990001", "oi")
    assert info.value.maybe_sent
    assert [(s.method, s.path) for s in edge.seen] == [("POST", "/message/sendText/julia")]


@pytest.mark.parametrize(
    "url", ["127.0.0.1:8080", "evolution/api", "http://", "http://evolution:80a"]
)
async def test_a_base_url_the_client_cannot_use_never_sends(
    http: aiohttp.ClientSession, url: str
) -> None:
    """A misconfigured URL fails before any connection: nothing went out, and the error
    names no token."""
    with pytest.raises(GatewayNetworkError) as info:
        await ZApiGateway(http, url, {"I": "TOK1SECRET"}, "C").send_text("I", "5511", "oi")
    assert info.value.maybe_sent is False
    assert "TOK1SECRET" not in str(info.value)


# --- proxies and the session's life -----------------------------------------------------------


def test_env_proxy_honours_https_proxy_and_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "evolution.internal,localhost")
    assert base.env_proxy("https://api.z-api.io/instances/I") == "http://proxy.example:3128"
    assert base.env_proxy("https://evolution.internal:8080") is None  # bypassed
    assert base.env_proxy("http://api.z-api.io") is None  # no HTTP_PROXY: direct
    monkeypatch.setenv("HTTP_PROXY", "http://plain.example:3128")
    assert base.env_proxy("http://api.z-api.io") == "http://plain.example:3128"


async def test_a_gateway_goes_through_the_environments_proxy(
    edge: Edge, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The edge plays the forward proxy: the request reaches it naming the real host."""
    monkeypatch.setenv("HTTP_PROXY", edge.url)
    edge.answer(201, fixture("evolution_sendText_response_201_docs.json"))
    gw = EvolutionGateway(http, "http://evolution.invalid", "KEY")
    assert (await gw.send_text("julia", "5511999990001", "oi")).provider_message_id
    [req] = edge.seen
    assert req.headers["host"] == "evolution.invalid"
    assert req.path == "/message/sendText/julia"


async def test_the_gateways_session_is_the_apps_and_closes_with_it(settings: Settings) -> None:
    async with App.open(settings) as app:
        http = registry.session(app)
        assert registry.session(app) is http  # one per App
        gateway = registry.gateway(app, "evolution")
        assert isinstance(gateway, EvolutionGateway) and gateway.http is http
        assert not http.closed
    assert http.closed


def test_the_default_evolution_url_is_the_sandbox_gateway() -> None:
    import inspect

    from julia_cli.commands import sandbox

    port = inspect.signature(sandbox.gateway_).parameters["port"].default
    assert Settings.model_fields["evolution_url"].default == f"http://127.0.0.1:{port}"
