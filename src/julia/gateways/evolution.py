"""Evolution API v2 adapter over the gateways' pooled session (header ``apikey``).

Wire shapes are Evolution API v2's (``message/sendText``, ``chat/findMessages``...) as in the
recorded fixtures (``tests/fixtures``); the sandbox gateway (:mod:`julia.sandbox.gateway`)
speaks the same.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from julia.core.errors import GatewayServerError
from julia.gateways.base import (
    HttpGateway,
    InstanceInfo,
    SendResult,
    SentRecord,
    jid_number,
)

if TYPE_CHECKING:  # the session is julia.gateways.base's; only it speaks aiohttp
    import aiohttp


class EvolutionGateway(HttpGateway):
    provider = "evolution"

    def __init__(
        self,
        http: aiohttp.ClientSession,
        base_url: str,
        api_key: str | None,
        *,
        timeout_s: float = 15,
    ) -> None:
        super().__init__(http, base_url, {"apikey": api_key or ""}, timeout_s)

    async def _call(
        self, method: str, path: str, instance: str | None = None, body: Any = None
    ) -> Any:
        url = f"{self.base_url}{path}" + (f"/{quote(instance, safe='')}" if instance else "")
        return await self._request(method, url, body)

    async def send_text(
        self, instance: str, number: str, text: str, *, delay_ms: int | None = None
    ) -> SendResult:
        body: dict[str, Any] = {"number": number, "text": text}
        if delay_ms:
            body["delay"] = delay_ms
        data = await self._call("POST", "/message/sendText", instance, body)
        key = (data or {}).get("key") or {}
        if not key.get("id"):
            raise GatewayServerError("sendText answer without key.id", maybe_sent=True)
        return SendResult(provider_message_id=str(key["id"]), raw=data)

    async def send_presence(
        self, instance: str, number: str, presence: str = "composing", delay_ms: int = 1000
    ) -> None:
        await self._call(
            "POST",
            "/chat/sendPresence",
            instance,
            {"number": number, "presence": presence, "delay": delay_ms},
        )

    async def mark_read(
        self, instance: str, remote_jid: str, message_id: str, *, from_me: bool = False
    ) -> None:
        await self._call(
            "POST",
            "/chat/markMessageAsRead",
            instance,
            {"readMessages": [{"id": message_id, "fromMe": from_me, "remoteJid": remote_jid}]},
        )

    async def connection_state(self, instance: str) -> str:
        data = await self._call("GET", "/instance/connectionState", instance)
        return str(((data or {}).get("instance") or {}).get("state") or "unknown")

    async def list_instances(self) -> list[InstanceInfo]:
        data = await self._call("GET", "/instance/fetchInstances")
        out = []
        for row in data or []:
            if "instance" in row and isinstance(row["instance"], dict):  # v1 shape
                inner = row["instance"]
                out.append(
                    InstanceInfo(
                        name=str(inner.get("instanceName")),
                        state=str(inner.get("status") or "unknown"),
                        number=inner.get("owner"),
                        raw=row,
                    )
                )
            else:  # v2: Prisma Instance rows
                out.append(
                    InstanceInfo(
                        name=str(row.get("name")),
                        state=str(row.get("connectionStatus") or "unknown"),
                        number=row.get("number") or jid_number(row.get("ownerJid") or "") or None,
                        raw=row,
                    )
                )
        return out

    async def check_numbers(self, instance: str, numbers: list[str]) -> dict[str, bool]:
        if not numbers:
            return {}
        data = await self._call("POST", "/chat/whatsappNumbers", instance, {"numbers": numbers})
        answers = {jid_number(str(r.get("number") or r.get("jid") or "")): bool(r.get("exists"))
                   for r in data or []}  # fmt: skip
        # Evolution may answer a number in its other (8/9-digit) form: match on both.
        out = {}
        for n in numbers:
            alt = n[:4] + n[5:] if len(n) == 13 else n[:4] + "9" + n[4:]
            out[n] = answers.get(n, answers.get(alt, False))
        return out

    async def find_sent(self, instance: str, number: str) -> list[SentRecord] | None:
        jid = f"{number}@s.whatsapp.net"
        data = await self._call(
            "POST",
            "/chat/findMessages",
            instance,
            {"where": {"key": {"remoteJid": jid, "fromMe": True}}, "page": 1, "offset": 100},
        )
        records = data
        if isinstance(data, dict):
            inner = data.get("messages", data)
            records = inner.get("records", []) if isinstance(inner, dict) else inner
        out = []
        for r in records or []:
            key = r.get("key") or {}
            if not key.get("fromMe"):
                continue
            msg = r.get("message") or {}
            text = msg.get("conversation") or (msg.get("extendedTextMessage") or {}).get("text")
            ts = r.get("messageTimestamp")
            out.append(
                SentRecord(
                    provider_message_id=str(key.get("id")),
                    number=jid_number(str(key.get("remoteJid") or "")),
                    text=str(text or ""),
                    at=datetime.fromtimestamp(int(ts), UTC) if ts else None,
                )
            )
        return out
