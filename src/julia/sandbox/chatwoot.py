"""The Chatwoot sandbox: an HTTP server speaking the Application API endpoints the handoff
uses, with Chatwoot's shapes, and delivering Chatwoot's signed webhooks.

    julia sandbox chatwoot --port 8095 --webhook-url http://127.0.0.1:8000/webhooks/chatwoot
    JULIA_CHATWOOT_URL=http://127.0.0.1:8095 JULIA_CHATWOOT_ACCOUNT_ID=1 JULIA_CHATWOOT_INBOX_ID=1

Under ``/api/v1/accounts/{account}`` (header ``api_access_token`` required; checked when
``api_token`` is set): ``GET /contacts/search?q=``, ``POST /contacts``,
``POST /contacts/{id}/contact_inboxes``, ``POST /conversations``, ``GET /conversations/{id}``,
``GET|POST /conversations/{id}/messages``, ``GET|POST /conversations/{id}/labels`` (POST
replaces the whole set, as Chatwoot does), ``POST /conversations/{id}/toggle_status``.
Like an API-channel inbox, every message created and every status or label change is
delivered to the webhook URL (``message_created``, ``conversation_status_changed``,
``conversation_updated`` with ``changed_attributes``), signed as Chatwoot does:
``X-Chatwoot-Signature: sha256=HMAC(secret, f"{timestamp}.{body}")``,
``X-Chatwoot-Timestamp``, ``X-Chatwoot-Delivery`` (a uuid).

Test controls under ``/_sandbox``:

- ``GET /_sandbox/calls``: every API call (``method, path, json``); ``DELETE`` clears.
- ``GET /_sandbox/conversations``: each ``id``, the contact's ``phone_number``, ``status``,
  ``labels``, ``messages``.
- ``POST /_sandbox/reply {"conversation_id", "content"}``: an operator's public reply.
- ``POST /_sandbox/resolve {"conversation_id"}``: the operator resolves it.
- ``POST /_sandbox/unlabel {"conversation_id", "label"}``: the operator removes a label.
  (These three deliver their webhook before answering: ``webhook_status``.)
- ``POST /_sandbox/faults {"status", "error_rate", "latency_ms"}`` (API calls fail);
  ``DELETE`` clears.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import random
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from julia.sandbox import server

OPERATOR = {"id": 7, "name": "Operadora Ana", "type": "user", "available_name": "Ana"}
JULIA_USER = {"id": 1, "name": "Júlia (API)", "type": "user"}


def sign(secret: str, timestamp: str, raw: bytes) -> str:
    """Chatwoot's signature (the same as ``julia.inbox.auth.chatwoot_signature``; the
    sandbox floor is below the inbox, so it cannot import it)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + raw, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


@dataclass
class Fault:
    status: int = 500
    error_rate: float = 1.0
    latency_ms: int = 0


@dataclass
class ChatwootState:
    account_id: int = 1
    webhook_url: str | None = None
    secret: str | None = None
    api_token: str | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)
    contacts: dict[int, dict[str, Any]] = field(default_factory=dict)
    conversations: dict[int, dict[str, Any]] = field(default_factory=dict)
    fault: Fault | None = None
    webhooks: list[dict[str, Any]] = field(default_factory=list)
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    message_ids: Iterator[int] = field(default_factory=lambda: itertools.count(1000))


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _err(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "message": message}, status_code=status)


def create_app(
    *, webhook_url: str | None = None, secret: str | None = None, api_token: str | None = None
) -> Starlette:
    """The sandbox as an ASGI app; its state is ``app.state.chatwoot``."""
    state = ChatwootState(webhook_url=webhook_url, secret=secret, api_token=api_token)
    pending: set[asyncio.Task[int | None]] = set()

    def contact_inbox(contact: dict[str, Any], inbox_id: int) -> dict[str, Any]:
        return {
            "source_id": contact["source_ids"][inbox_id],
            "inbox": {"id": inbox_id, "name": "Júlia", "channel_type": "Channel::Api"},
        }

    def contact_json(c: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": c["id"],
            "name": c["name"],
            "phone_number": c["phone_number"],
            "identifier": c["identifier"],
            "email": None,
            "thumbnail": "",
            "type": "contact",
            "additional_attributes": {},
            "custom_attributes": {},
            "contact_inboxes": [contact_inbox(c, i) for i in c["source_ids"]],
        }

    def conversation_json(conv: dict[str, Any]) -> dict[str, Any]:
        contact = state.contacts[conv["contact_id"]]
        return {
            "additional_attributes": {},
            "can_reply": True,
            "channel": "Channel::Api",
            "contact_inbox": {
                "id": conv["id"],
                "contact_id": contact["id"],
                "inbox_id": conv["inbox_id"],
                "source_id": conv["source_id"],
            },
            "id": conv["id"],
            "inbox_id": conv["inbox_id"],
            "account_id": state.account_id,
            "messages": conv["messages"][-1:],
            "labels": list(conv["labels"]),
            "meta": {"sender": contact_json(contact), "assignee": None},
            "status": conv["status"],
            "custom_attributes": {},
            "snoozed_until": None,
            "unread_count": 0,
            "priority": None,
            "timestamp": int(time.time()),
            "created_at": conv["created_at"],
        }

    async def deliver(payload: dict[str, Any]) -> int | None:
        """POST one webhook, signed; the HTTP status (None: not delivered)."""
        state.webhooks.append(payload)
        if not state.webhook_url:
            return None
        raw = json.dumps(payload, ensure_ascii=False).encode()
        ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Chatwoot-Timestamp": ts,
            "X-Chatwoot-Delivery": str(uuid.uuid4()),
        }
        if state.secret:
            headers["X-Chatwoot-Signature"] = sign(state.secret, ts, raw)
        try:
            async with httpx.AsyncClient(timeout=5) as http:  # Chatwoot's own 5 s timeout
                return (
                    await http.post(state.webhook_url, content=raw, headers=headers)
                ).status_code
        except httpx.HTTPError:
            return None

    def deliver_later(payload: dict[str, Any]) -> None:
        task = asyncio.create_task(deliver(payload))
        pending.add(task)
        task.add_done_callback(pending.discard)

    def message_event(conv: dict[str, Any], m: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": m["id"],
            "content": m["content"],
            "created_at": m["created_at"],
            "message_type": m["message_type"],
            "content_type": "text",
            "private": m["private"],
            "content_attributes": {},
            "source_id": None,
            "sender": m["sender"],
            "inbox": {"id": conv["inbox_id"], "name": "Júlia"},
            "conversation": conversation_json(conv),
            "account": {"id": state.account_id, "name": "Sandbox"},
            "event": "message_created",
        }

    def add_message(
        conv: dict[str, Any], content: str, kind: str, private: bool, sender: dict[str, Any]
    ) -> dict[str, Any]:
        m = {
            "id": next(state.message_ids),
            "content": content,
            "message_type": kind,
            "private": private,
            "sender": sender,
            "created_at": _now(),
            "conversation_id": conv["id"],
        }
        conv["messages"].append(m)
        return m

    def status_event(conv: dict[str, Any], before: str) -> dict[str, Any]:
        return conversation_json(conv) | {
            "event": "conversation_status_changed",
            "changed_attributes": [
                {"status": {"previous_value": before, "current_value": conv["status"]}}
            ],
        }

    def labels_event(conv: dict[str, Any], before: list[str]) -> dict[str, Any]:
        return conversation_json(conv) | {
            "event": "conversation_updated",
            "changed_attributes": [
                {"label_list": {"previous_value": before, "current_value": list(conv["labels"])}}
            ],
        }

    async def body_of(request: Request) -> Any:
        raw = await request.body()
        try:
            return json.loads(raw) if raw else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None

    async def api(request: Request) -> Response:
        body = await body_of(request)
        state.calls.append(
            {
                "method": request.method,
                "path": request.url.path,
                "json": body,
                "query": dict(request.query_params),
            }
        )
        token = request.headers.get("api_access_token")
        if not token or (state.api_token and token != state.api_token):
            return _err(401, "You need to sign in or sign up before continuing.")
        fault = state.fault
        if fault is not None:
            if fault.latency_ms:
                await asyncio.sleep(fault.latency_ms / 1000)
            if random.random() < fault.error_rate:
                return _err(fault.status, "fault injected")
        if int(request.path_params["account"]) != state.account_id:
            return _err(404, "Resource could not be found")
        rest = request.path_params["rest"].strip("/").split("/")
        return route(
            request.method, rest, body if isinstance(body, dict) else {}, dict(request.query_params)
        )

    def route(
        method: str, rest: list[str], body: dict[str, Any], query: dict[str, str]
    ) -> Response:
        match (method, rest):
            case ("GET", ["contacts", "search"]):
                q = (query.get("q") or "").lower()
                found = [
                    contact_json(c)
                    for c in state.contacts.values()
                    if q and q in f"{c['phone_number']} {c['name']} {c['identifier']}".lower()
                ]
                return JSONResponse(
                    {"meta": {"count": len(found), "current_page": 1}, "payload": found}
                )
            case ("POST", ["contacts"]):
                inbox_id = body.get("inbox_id")
                phone = body.get("phone_number")
                if not isinstance(inbox_id, int):
                    return _err(422, "inbox_id is required")
                if phone and any(c["phone_number"] == phone for c in state.contacts.values()):
                    return _err(422, "Phone number has already been taken")
                cid = next(state.ids)
                c: dict[str, Any] = {
                    "id": cid,
                    "name": body.get("name") or "",
                    "phone_number": phone,
                    "identifier": body.get("identifier"),
                    "source_ids": {inbox_id: str(uuid.uuid4())},
                }
                state.contacts[cid] = c
                return JSONResponse(
                    {
                        "payload": {
                            "contact": contact_json(c),
                            "contact_inbox": contact_inbox(c, inbox_id),
                        }
                    }
                )
            case ("POST", ["contacts", cid, "contact_inboxes"]):
                known = state.contacts.get(int(cid)) if cid.isdigit() else None
                if known is None or not isinstance(body.get("inbox_id"), int):
                    return _err(404, "Resource could not be found")
                known["source_ids"].setdefault(
                    body["inbox_id"], body.get("source_id") or str(uuid.uuid4())
                )
                return JSONResponse(contact_inbox(known, body["inbox_id"]))
            case ("POST", ["conversations"]):
                contact = next(
                    (
                        c
                        for c in state.contacts.values()
                        if body.get("source_id") in c["source_ids"].values()
                    ),
                    None,
                )
                if contact is None or not isinstance(body.get("inbox_id"), int):
                    return _err(422, "source_id and inbox_id are required")
                conv: dict[str, Any] = {
                    "id": next(state.ids),
                    "contact_id": contact["id"],
                    "inbox_id": body["inbox_id"],
                    "source_id": body["source_id"],
                    "status": body.get("status") or "open",
                    "labels": [],
                    "messages": [],
                    "created_at": int(time.time()),
                }
                state.conversations[conv["id"]] = conv
                deliver_later(conversation_json(conv) | {"event": "conversation_created"})
                return JSONResponse(conversation_json(conv))
        if len(rest) >= 2 and rest[0] == "conversations" and rest[1].isdigit():
            existing = state.conversations.get(int(rest[1]))
            if existing is None:
                return _err(404, "Resource could not be found")
            return conversation_route(method, rest[2:], existing, body)
        return _err(404, "Resource could not be found")

    def conversation_route(
        method: str, rest: list[str], conv: dict[str, Any], body: dict[str, Any]
    ) -> Response:
        match (method, rest):
            case ("GET", []):
                return JSONResponse(conversation_json(conv))
            case ("GET", ["messages"]):
                return JSONResponse({"payload": conv["messages"]})
            case ("POST", ["messages"]):
                content = body.get("content")
                kind = body.get("message_type") or "outgoing"
                if (
                    not isinstance(content, str)
                    or not content
                    or kind not in ("incoming", "outgoing")
                ):
                    return _err(422, "content is required; message_type incoming or outgoing")
                sender = (
                    JULIA_USER
                    if kind == "outgoing"
                    else {
                        "id": conv["contact_id"],
                        "name": state.contacts[conv["contact_id"]]["name"],
                        "type": "contact",
                    }
                )
                m = add_message(conv, content, kind, body.get("private") is True, sender)
                deliver_later(message_event(conv, m))
                # The REST answer carries message_type as Chatwoot's integer (0 in, 1 out).
                return JSONResponse(m | {"message_type": 0 if kind == "incoming" else 1})
            case ("GET", ["labels"]):
                return JSONResponse({"payload": list(conv["labels"])})
            case ("POST", ["labels"]):
                labels = body.get("labels")
                if not isinstance(labels, list):
                    return _err(422, "labels must be a list")
                before = list(conv["labels"])
                conv["labels"] = [str(x) for x in labels]  # replaces the whole set
                if before != conv["labels"]:
                    deliver_later(labels_event(conv, before))
                return JSONResponse({"payload": list(conv["labels"])})
            case ("POST", ["toggle_status"]):
                status = body.get("status")
                if status not in ("open", "resolved", "pending", "snoozed"):
                    return _err(422, "status must be open, resolved, pending or snoozed")
                before = conv["status"]
                conv["status"] = status
                if before != status:
                    deliver_later(status_event(conv, before))
                return JSONResponse(
                    {
                        "meta": {},
                        "payload": {
                            "success": True,
                            "conversation_id": conv["id"],
                            "current_status": status,
                        },
                    }
                )
        return _err(404, "Resource could not be found")

    # --- controls -----------------------------------------------------------------

    async def calls(request: Request) -> Response:
        if request.method == "DELETE":
            state.calls.clear()
            return JSONResponse({"cleared": True})
        return JSONResponse(state.calls)

    async def conversations(_: Request) -> Response:
        return JSONResponse(
            [
                {
                    "id": c["id"],
                    "phone_number": state.contacts[c["contact_id"]]["phone_number"],
                    "status": c["status"],
                    "labels": c["labels"],
                    "messages": c["messages"],
                }
                for c in state.conversations.values()
            ]
        )

    async def operator(request: Request) -> Response:
        body = await body_of(request)
        if not isinstance(body, dict) or not isinstance(body.get("conversation_id"), int):
            return _err(400, "expected {conversation_id, ...}")
        conv = state.conversations.get(body["conversation_id"])
        if conv is None:
            return _err(404, "no such conversation")
        action = request.url.path.rsplit("/", 1)[-1]
        if action == "reply":
            content = body.get("content")
            if not isinstance(content, str) or not content.strip():
                return _err(400, "expected {conversation_id, content}")
            m = add_message(conv, content, "outgoing", False, OPERATOR)
            return JSONResponse(
                {"message": m, "webhook_status": await deliver(message_event(conv, m))}
            )
        if action == "resolve":
            before = conv["status"]
            conv["status"] = "resolved"
            return JSONResponse({"webhook_status": await deliver(status_event(conv, before))})
        label = body.get("label")
        if not isinstance(label, str):
            return _err(400, "expected {conversation_id, label}")
        before = list(conv["labels"])
        conv["labels"] = [x for x in before if x != label]
        return JSONResponse({"webhook_status": await deliver(labels_event(conv, before))})

    async def faults(request: Request) -> Response:
        if request.method == "DELETE":
            state.fault = None
            return JSONResponse({"fault": None})
        if request.method == "GET":
            return JSONResponse({"fault": state.fault.__dict__ if state.fault else None})
        body = await body_of(request)
        try:
            assert isinstance(body, dict)
            state.fault = Fault(
                status=int(body.get("status", 500)),
                error_rate=float(body.get("error_rate", 1.0)),
                latency_ms=int(body.get("latency_ms", 0)),
            )
        except (AssertionError, ValueError, TypeError):
            return _err(400, "expected {status, error_rate, latency_ms}")
        return JSONResponse({"fault": state.fault.__dict__})

    app = Starlette(
        routes=[
            Route("/api/v1/accounts/{account:int}/{rest:path}", api, methods=["GET", "POST"]),
            Route("/_sandbox/calls", calls, methods=["GET", "DELETE"]),
            Route("/_sandbox/conversations", conversations, methods=["GET"]),
            Route("/_sandbox/reply", operator, methods=["POST"]),
            Route("/_sandbox/resolve", operator, methods=["POST"]),
            Route("/_sandbox/unlabel", operator, methods=["POST"]),
            Route("/_sandbox/faults", faults, methods=["GET", "POST", "DELETE"]),
        ]
    )
    app.state.chatwoot = state
    return app


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8095,
    webhook_url: str | None = None,
    secret: str | None = None,
    api_token: str | None = None,
) -> None:
    """Run the Chatwoot sandbox until interrupted (blocking)."""
    server.serve(
        create_app(webhook_url=webhook_url, secret=secret, api_token=api_token), host, port
    )


@contextmanager
def running(
    *, host: str = "127.0.0.1", port: int = 0, **options: Any
) -> Iterator[tuple[str, ChatwootState]]:
    """Run the sandbox in a background thread; yields ``(base_url, state)``."""
    app = create_app(**options)
    with server.in_thread(app, host, port, "Chatwoot sandbox") as bound:
        yield f"http://{host}:{bound}", app.state.chatwoot
