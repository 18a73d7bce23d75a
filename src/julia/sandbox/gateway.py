"""The sandbox gateway: an HTTP server speaking Evolution API v2, for tests and demos.

    julia sandbox gateway --port 8081 --webhook-url http://127.0.0.1:8000/webhook/evolution

Evolution endpoints (same paths, bodies and answers as the real server, header
``apikey`` checked when ``api_key`` is set): ``POST /message/sendText/{i}``,
``POST /chat/sendPresence/{i}``, ``POST /chat/markMessageAsRead/{i}``,
``POST /chat/whatsappNumbers/{i}``, ``POST /chat/findMessages/{i}``,
``GET /instance/connectionState/{i}``, ``GET /instance/fetchInstances``.

Test controls under ``/_sandbox``:

- ``GET /_sandbox/calls``: how many calls each Evolution endpoint received.
- ``GET /_sandbox/messages[?instance=&number=]``: every accepted message
  (``id, instance, number, text, time``); ``DELETE`` clears them.
- ``POST /_sandbox/faults`` ``{"instance", "status", "error_rate", "latency_ms",
  "disconnected", "retry_after"}`` (all optional; no instance = every instance;
  ``retry_after`` is sent verbatim as the ``Retry-After`` header); ``DELETE`` clears.
- ``POST /_sandbox/zapi`` ``{"instance", "token", "client_token"}``: a Z-API instance
  the sandbox answers for, at ``/instances/{id}/token/{token}/send-text``, ``/status``
  and ``/phone-exists/{phone}`` (Z-API's wire shapes; a wrong token or Client-Token
  is a 401). Its accepted messages join ``/_sandbox/messages`` (``"provider": "zapi"``).
- ``POST /_sandbox/numbers`` ``{"not_on_whatsapp": [...]}``; ``DELETE`` clears.
- ``POST /_sandbox/incoming`` ``{"instance", "number", "text", "push_name", "id",
  "audio"}``: posts a ``messages.upsert`` webhook (a doctor writing; ``"audio": true``
  sends a voice note instead of text) to the webhook URL.
- ``POST /_sandbox/ack`` ``{"id", "status"}``: posts a ``messages.update`` (delivery or
  read ack) for a message the sandbox accepted.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from julia.sandbox import server

if TYPE_CHECKING:
    from julia.core.app import App

SERVER_URL = "http://sandbox.local"
OWN_JID = "5511900000000@s.whatsapp.net"


@dataclass
class Fault:
    status: int | None = None
    error_rate: float = 1.0
    latency_ms: int = 0
    disconnected: bool = False
    #: The ``Retry-After`` header sent with the fault's answer, verbatim.
    retry_after: str | None = None


@dataclass
class SandboxState:
    webhook_url: str | None = None
    api_key: str | None = None
    auto_ack: bool = False
    messages: list[dict[str, Any]] = field(default_factory=list)
    faults: dict[str | None, Fault] = field(default_factory=dict)
    not_on_whatsapp: set[str] = field(default_factory=set)
    instances: dict[str, str] = field(default_factory=dict)  # name -> instanceId
    http: httpx.AsyncClient | None = None
    by_id: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Calls received per Evolution endpoint (``GET /_sandbox/calls``).
    calls: dict[str, int] = field(default_factory=dict)

    def instance_id(self, name: str) -> str:
        if name not in self.instances:
            self.instances[name] = str(uuid.uuid4())
        return self.instances[name]

    def fault(self, instance: str | None) -> Fault | None:
        return self.faults.get(instance) or self.faults.get(None)

    #: Z-API instances the sandbox knows: instance id -> (token, Client-Token or None).
    zapi: dict[str, tuple[str, str | None]] = field(default_factory=dict)


def _error(status: int, message: Any, retry_after: str | None = None) -> JSONResponse:
    names = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}
    error = names.get(status, "Too Many Requests" if status == 429 else "Internal Server Error")
    return JSONResponse(
        {"status": status, "error": error, "response": {"message": message}}, status_code=status,
        headers={"Retry-After": retry_after} if retry_after is not None else None,
    )  # fmt: skip


def _digits(number: str) -> str:
    return number.split("@", 1)[0].split(":", 1)[0].lstrip("+")


def _envelope(state: SandboxState, event: str, instance: str, data: dict[str, Any]) -> Any:
    now = datetime.now(UTC)
    return {
        "event": event,
        "instance": instance,
        "data": data,
        "destination": state.webhook_url,
        "date_time": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "sender": OWN_JID,
        "server_url": SERVER_URL,
        "apikey": state.api_key,
    }


async def _post_webhook(state: SandboxState, payload: dict[str, Any]) -> int | None:
    if not state.webhook_url or state.http is None:
        return None
    try:
        response = await state.http.post(state.webhook_url, json=payload)
    except httpx.HTTPError:
        return None
    return response.status_code


def create_app(
    *, webhook_url: str | None = None, api_key: str | None = None, auto_ack: bool = False
) -> Starlette:
    """The sandbox's Starlette app; its state is ``app.state.sandbox``."""
    state = SandboxState(webhook_url=webhook_url, api_key=api_key, auto_ack=auto_ack)
    background: set[asyncio.Task[Any]] = set()

    async def guard(request: Request) -> tuple[str, Response | None]:
        """Read the body, check auth, then apply the instance's fault (latency, error).

        The body is read first, as a real gateway would, so a client that gives up
        during the latency still leaves its message sent (a lost answer)."""
        if request.method == "POST":
            try:
                request.state.body = await request.json()
            except ValueError:
                return "", _error(400, ["invalid JSON body"])
        instance = request.path_params.get("instance", "")
        endpoint = request.url.path.split("/")[2]
        state.calls[endpoint] = state.calls.get(endpoint, 0) + 1
        if state.api_key and request.headers.get("apikey") != state.api_key:
            return instance, _error(401, "Unauthorized")
        fault = state.fault(instance or None)
        if fault is None:
            return instance, None
        if fault.latency_ms:
            await asyncio.sleep(fault.latency_ms / 1000)
        if fault.status and random.random() < fault.error_rate:
            return instance, _error(
                fault.status, [f"sandbox fault {fault.status}"], fault.retry_after
            )
        return instance, None

    async def zapi_guard(request: Request) -> tuple[str, Response | None]:
        """Z-API's ``/instances/{id}/token/{token}/...``: the instance's own token in the
        path and, when it has one, its ``Client-Token`` header; then the faults."""
        instance, token = request.path_params["instance"], request.path_params["token"]
        action = request.url.path.rsplit("/token/", 1)[1].split("/", 1)[0]
        state.calls[f"zapi:{action}"] = state.calls.get(f"zapi:{action}", 0) + 1
        if request.method == "POST":
            try:
                request.state.body = await request.json()
            except ValueError:
                return instance, JSONResponse({"error": "invalid JSON body"}, status_code=400)
        known = state.zapi.get(instance)
        if known is None or known[0] != token:
            return instance, JSONResponse({"error": "Instance not found"}, status_code=401)
        if known[1] is not None and request.headers.get("client-token") != known[1]:
            return instance, JSONResponse({"error": "null not allowed"}, status_code=401)
        fault = state.fault(instance)
        if fault is not None and fault.latency_ms:
            await asyncio.sleep(fault.latency_ms / 1000)
        if fault is not None and fault.status and random.random() < fault.error_rate:
            return instance, _error(fault.status, [f"sandbox fault {fault.status}"],
                                    fault.retry_after)  # fmt: skip
        return instance, None

    async def zapi_send_text(request: Request) -> Response:
        instance, refused = await zapi_guard(request)
        if refused is not None:
            return refused
        body = request.state.body
        phone, text = str(body.get("phone") or ""), body.get("message")
        if not phone or not text:
            return JSONResponse({"error": "phone and message are required"}, status_code=400)
        digits = _digits(phone)
        if digits in state.not_on_whatsapp:
            return JSONResponse({"error": "phone not on WhatsApp"}, status_code=400)
        message_id = "D241" + uuid.uuid4().hex[:16].upper()
        record = {
            "id": message_id, "instance": instance, "number": digits, "text": text,
            "time": datetime.now(UTC).isoformat(), "timestamp": int(time.time()),
            "status": "PENDING", "provider": "zapi",
        }  # fmt: skip
        state.messages.append(record)
        state.by_id[message_id] = record
        return JSONResponse({"zaapId": uuid.uuid4().hex.upper(), "messageId": message_id,
                             "id": message_id})  # fmt: skip

    async def zapi_status(request: Request) -> Response:
        instance, refused = await zapi_guard(request)
        if refused is not None:
            return refused
        fault = state.fault(instance)
        connected = not (fault is not None and fault.disconnected)
        return JSONResponse({"connected": connected, "smartphoneConnected": connected,
                             "error": None if connected else "You are not connected."})  # fmt: skip

    async def zapi_phone_exists(request: Request) -> Response:
        _, refused = await zapi_guard(request)
        if refused is not None:
            return refused
        return JSONResponse({"exists": request.path_params["phone"] not in state.not_on_whatsapp})

    async def zapi_instances(request: Request) -> Response:
        body = await request.json()
        try:
            instance, token = str(body["instance"]), str(body["token"])
        except (KeyError, TypeError):
            return JSONResponse({"error": "instance and token are required"}, status_code=400)
        client = body.get("client_token")
        state.zapi[instance] = (token, str(client) if client else None)
        return JSONResponse({"instance": instance})

    async def send_text(request: Request) -> Response:
        instance, refused = await guard(request)
        if refused is not None:
            return refused
        fault = state.fault(instance)
        if fault is not None and fault.disconnected:
            return _error(500, ["Error: Connection Closed"])
        body = request.state.body
        number, text = str(body.get("number") or ""), body.get("text")
        if not number:
            return _error(400, ['instance requires property "number"'])
        if not text:
            return _error(400, ["Text is required"])
        digits = _digits(number)
        jid = f"{digits}@s.whatsapp.net"
        if digits in state.not_on_whatsapp:
            return _error(400, [{"jid": jid, "exists": False, "number": digits}])
        key_id = "3EB0" + uuid.uuid4().hex[:16].upper()
        ts = int(time.time())
        record = {
            "id": key_id,
            "instance": instance,
            "number": digits,
            "text": text,
            "time": datetime.now(UTC).isoformat(),
            "timestamp": ts,
            "status": "PENDING",
        }
        state.messages.append(record)
        state.by_id[key_id] = record
        if state.auto_ack and state.webhook_url:
            task = asyncio.create_task(_ack(record, "DELIVERY_ACK"))
            background.add(task)
            task.add_done_callback(background.discard)
        return JSONResponse(
            {
                "key": {"remoteJid": jid, "fromMe": True, "id": key_id},
                "pushName": "Você",
                "status": "PENDING",
                "message": {"conversation": text},
                "contextInfo": None,
                "messageType": "conversation",
                "messageTimestamp": ts,
                "instanceId": state.instance_id(instance),
                "source": "unknown",
            },
            status_code=201,
        )

    async def _ack(record: dict[str, Any], status: str) -> int | None:
        record["status"] = status
        data = {
            "keyId": record["id"],
            "remoteJid": f"{record['number']}@s.whatsapp.net",
            "fromMe": True,
            "participant": None,
            "status": status,
            "instanceId": state.instance_id(record["instance"]),
            "messageId": uuid.uuid4().hex[:25],
        }
        return await _post_webhook(
            state, _envelope(state, "messages.update", record["instance"], data)
        )

    async def send_presence(request: Request) -> Response:
        _, refused = await guard(request)
        if refused is not None:
            return refused
        body = request.state.body
        if not body.get("number") or not body.get("presence"):
            return _error(400, ['instance requires property "number" and "presence"'])
        return JSONResponse({"presence": body["presence"]}, status_code=201)

    async def mark_read(request: Request) -> Response:
        _, refused = await guard(request)
        if refused is not None:
            return refused
        body = request.state.body
        if not isinstance(body.get("readMessages"), list):
            return _error(400, ['instance requires property "readMessages"'])
        return JSONResponse({"message": "Read messages", "read": "success"}, status_code=201)

    async def whatsapp_numbers(request: Request) -> Response:
        _, refused = await guard(request)
        if refused is not None:
            return refused
        body = request.state.body
        out = []
        for n in body.get("numbers") or []:
            digits = _digits(str(n))
            out.append(
                {
                    "exists": digits not in state.not_on_whatsapp,
                    "jid": f"{digits}@s.whatsapp.net",
                    "number": digits,
                }
            )
        return JSONResponse(out)

    async def find_messages(request: Request) -> Response:
        instance, refused = await guard(request)
        if refused is not None:
            return refused
        body = request.state.body
        key = ((body.get("where") or {}).get("key")) or {}
        jid = key.get("remoteJid")
        rows = [
            m
            for m in state.messages
            if m["instance"] == instance and (jid is None or m["number"] == _digits(jid))
        ]
        records = [
            {
                "id": m["id"],
                "key": {
                    "remoteJid": f"{m['number']}@s.whatsapp.net",
                    "fromMe": True,
                    "id": m["id"],
                },
                "pushName": "Você",
                "messageType": "conversation",
                "message": {"conversation": m["text"]},
                "messageTimestamp": m["timestamp"],
                "instanceId": state.instance_id(instance),
                "status": m["status"],
            }
            for m in reversed(rows)
        ]
        return JSONResponse(
            {"messages": {"total": len(records), "pages": 1, "currentPage": 1, "records": records}}
        )

    async def connection_state(request: Request) -> Response:
        instance, refused = await guard(request)
        if refused is not None:
            return refused
        fault = state.fault(instance)
        st = "close" if fault is not None and fault.disconnected else "open"
        return JSONResponse({"instance": {"instanceName": instance, "state": st}})

    async def fetch_instances(request: Request) -> Response:
        _, refused = await guard(request)
        if refused is not None:
            return refused
        rows = []
        for name, iid in sorted(state.instances.items()):
            fault = state.fault(name)
            rows.append(
                {
                    "id": iid,
                    "name": name,
                    "connectionStatus": "close" if fault and fault.disconnected else "open",
                    "ownerJid": OWN_JID,
                    "profileName": name,
                    "integration": "WHATSAPP-BAILEYS",
                    "number": None,
                    "token": None,
                    "_count": {"Message": sum(1 for m in state.messages if m["instance"] == name)},
                }
            )
        return JSONResponse(rows)

    # --- test controls ---------------------------------------------------

    async def messages(request: Request) -> Response:
        if request.method == "DELETE":
            state.messages.clear()
            state.by_id.clear()
            return JSONResponse({"cleared": True})
        instance = request.query_params.get("instance")
        number = request.query_params.get("number")
        rows = [
            {
                k: m[k]
                for k in ("id", "instance", "number", "text", "time", "status", "provider")
                if k in m
            }  # "provider" only on Z-API's: Evolution's rows stay as they were
            for m in state.messages
            if (instance is None or m["instance"] == instance)
            and (number is None or m["number"] == _digits(number))
        ]
        return JSONResponse(rows)

    async def calls(request: Request) -> Response:
        return JSONResponse(state.calls)

    async def faults(request: Request) -> Response:
        if request.method == "DELETE":
            state.faults.clear()
            return JSONResponse({"cleared": True})
        if request.method == "GET":
            return JSONResponse({str(k or "*"): asdict(v) for k, v in state.faults.items()})
        body = await request.json()
        try:
            fault = Fault(
                status=int(body["status"]) if body.get("status") is not None else None,
                error_rate=float(body.get("error_rate", 1.0)),
                latency_ms=int(body.get("latency_ms", 0)),
                disconnected=bool(body.get("disconnected", False)),
                retry_after=str(body["retry_after"]) if body.get("retry_after") else None,
            )
        except (TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        instance = body.get("instance")
        state.faults[instance] = fault
        if instance:
            state.instance_id(instance)
        return JSONResponse({"instance": instance, **asdict(fault)})

    async def numbers(request: Request) -> Response:
        if request.method == "DELETE":
            state.not_on_whatsapp.clear()
        else:
            body = await request.json()
            state.not_on_whatsapp |= {_digits(str(n)) for n in body.get("not_on_whatsapp", [])}
        return JSONResponse({"not_on_whatsapp": sorted(state.not_on_whatsapp)})

    async def incoming(request: Request) -> Response:
        body = await request.json()
        instance = str(body.get("instance") or "julia")
        digits = _digits(str(body.get("number") or ""))
        message: dict[str, Any] = {"conversation": str(body.get("text") or "")}
        if body.get("audio"):
            message = {"audioMessage": {"mimetype": "audio/ogg; codecs=opus", "seconds": 7,
                                        "ptt": True}}  # fmt: skip
        data = {
            "key": {
                "remoteJid": f"{digits}@s.whatsapp.net",
                "fromMe": False,
                "id": body.get("id") or uuid.uuid4().hex[:32].upper(),
            },
            "pushName": body.get("push_name") or "Médico",
            "status": "DELIVERY_ACK",
            "message": message,
            "messageType": next(iter(message)),
            "messageTimestamp": int(time.time()),
            "instanceId": state.instance_id(instance),
            "source": "android",
        }
        payload = _envelope(state, "messages.upsert", instance, data)
        delivered = await _post_webhook(state, payload)
        return JSONResponse({"webhook_status": delivered, "payload": payload})

    async def ack(request: Request) -> Response:
        body = await request.json()
        record = state.by_id.get(str(body.get("id")))
        if record is None:
            return JSONResponse({"error": "no such message"}, status_code=404)
        delivered = await _ack(record, str(body.get("status") or "DELIVERY_ACK"))
        return JSONResponse({"webhook_status": delivered})

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        state.http = httpx.AsyncClient(timeout=10)
        try:
            yield
        finally:
            await state.http.aclose()

    app = Starlette(
        routes=[
            Route("/message/sendText/{instance}", send_text, methods=["POST"]),
            Route("/chat/sendPresence/{instance}", send_presence, methods=["POST"]),
            Route("/chat/markMessageAsRead/{instance}", mark_read, methods=["POST"]),
            Route("/chat/whatsappNumbers/{instance}", whatsapp_numbers, methods=["POST"]),
            Route("/chat/findMessages/{instance}", find_messages, methods=["POST"]),
            Route("/instance/connectionState/{instance}", connection_state, methods=["GET"]),
            Route("/instance/fetchInstances", fetch_instances, methods=["GET"]),
            Route("/_sandbox/messages", messages, methods=["GET", "DELETE"]),
            Route("/_sandbox/calls", calls, methods=["GET"]),
            Route("/_sandbox/faults", faults, methods=["GET", "POST", "DELETE"]),
            Route("/_sandbox/zapi", zapi_instances, methods=["POST"]),
            Route(
                "/instances/{instance}/token/{token}/send-text", zapi_send_text, methods=["POST"]
            ),
            Route("/instances/{instance}/token/{token}/status", zapi_status, methods=["GET"]),
            Route(
                "/instances/{instance}/token/{token}/phone-exists/{phone}",
                zapi_phone_exists,
                methods=["GET"],
            ),
            Route("/_sandbox/numbers", numbers, methods=["POST", "DELETE"]),
            Route("/_sandbox/incoming", incoming, methods=["POST"]),
            Route("/_sandbox/ack", ack, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
    app.state.sandbox = state
    return app


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8081,
    webhook_url: str | None = None,
    api_key: str | None = None,
    auto_ack: bool = False,
) -> None:
    """Run the sandbox gateway until interrupted (blocking)."""
    server.serve(
        create_app(webhook_url=webhook_url, api_key=api_key, auto_ack=auto_ack), host, port
    )


@contextmanager
def running(
    *, host: str = "127.0.0.1", port: int = 0, **options: Any
) -> Iterator[tuple[str, SandboxState]]:
    """Run the sandbox in a background thread; yields ``(base_url, state)``."""
    app = create_app(**options)
    with server.in_thread(app, host, port, "sandbox gateway") as bound:
        yield f"http://{host}:{bound}", app.state.sandbox


def control(sandbox: str | App, path: str, method: str = "GET", **kw: Any) -> Any:
    """Call a running sandbox's control API (``/_sandbox/...``) and return its JSON.

    ``sandbox`` is its base URL, or an App whose ``JULIA_EVOLUTION_URL`` points at it."""
    url = sandbox if isinstance(sandbox, str) else sandbox.settings.evolution_url
    response = httpx.request(method, url + path, timeout=30, **kw)
    response.raise_for_status()
    return response.json()
