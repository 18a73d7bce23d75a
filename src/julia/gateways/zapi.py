"""Z-API adapter: ``/instances/{id}/token/{token}/...`` with the ``Client-Token`` header.

Per Z-API's documented send and status endpoints. Z-API keeps no queryable history of sent
messages, so :meth:`find_sent` answers None and an uncertain send waits for an
operator. Typing is shown through ``delayTyping`` on the send itself, so
:meth:`send_presence` only remembers the wish for the next send.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from julia.core.errors import GatewayServerError
from julia.gateways.base import (
    HttpGateway,
    InstanceInfo,
    SendResult,
    SentRecord,
)

if TYPE_CHECKING:  # the session is julia.gateways.base's; only it speaks aiohttp
    import aiohttp


class ZApiGateway(HttpGateway):
    provider = "zapi"

    def __init__(
        self,
        http: aiohttp.ClientSession,
        base_url: str,
        tokens: dict[str, str],
        client_token: str | None,
        *,
        timeout_s: float = 15,
    ) -> None:
        super().__init__(
            http, base_url, {"Client-Token": client_token} if client_token else {}, timeout_s
        )
        self.tokens = tokens  # instance id -> instance token
        #: instance id -> that instance's own Client-Token header (Z-API chips' own)
        self.client_tokens: dict[str, dict[str, str]] = {}
        self._typing_s: dict[tuple[str, str], int] = {}

    def register(self, instance: str, token: str, client_token: str | None) -> None:
        """Add (or replace) one instance's credentials: each Z-API chip carries its own."""
        self.tokens[instance] = token
        if client_token:
            self.client_tokens[instance] = {"Client-Token": client_token}
        else:
            self.client_tokens.pop(instance, None)

    async def _call(self, method: str, instance: str, action: str, body: Any = None) -> Any:
        token = quote(self.tokens.get(instance, ""), safe="")
        url = f"{self.base_url}/instances/{quote(instance, safe='')}/token/{token}/{action}"
        return await self._request(method, url, body, self.client_tokens.get(instance))

    async def send_text(
        self, instance: str, number: str, text: str, *, delay_ms: int | None = None
    ) -> SendResult:
        body: dict[str, Any] = {"phone": number, "message": text}
        typing = self._typing_s.pop((instance, number), 0)
        if typing:
            body["delayTyping"] = typing
        if delay_ms:
            body["delayMessage"] = max(1, min(15, round(delay_ms / 1000)))
        data = await self._call("POST", instance, "send-text", body)
        message_id = (data or {}).get("messageId") or (data or {}).get("zaapId")
        if not message_id:
            raise GatewayServerError("send-text answer without messageId", maybe_sent=True)
        return SendResult(provider_message_id=str(message_id), raw=data)

    async def send_presence(
        self, instance: str, number: str, presence: str = "composing", delay_ms: int = 1000
    ) -> None:
        if presence == "composing":
            self._typing_s[(instance, number)] = max(1, min(15, round(delay_ms / 1000)))

    async def mark_read(
        self, instance: str, remote_jid: str, message_id: str, *, from_me: bool = False
    ) -> None:
        phone = remote_jid.split("@", 1)[0]
        await self._call(
            "POST", instance, "read-message", {"phone": phone, "messageId": message_id}
        )

    async def connection_state(self, instance: str) -> str:
        data = await self._call("GET", instance, "status") or {}
        return "open" if data.get("connected") else "close"

    async def list_instances(self) -> list[InstanceInfo]:
        return [
            InstanceInfo(name=name, state=await self.connection_state(name)) for name in self.tokens
        ]

    async def check_numbers(self, instance: str, numbers: list[str]) -> dict[str, bool]:
        out = {}
        for n in numbers:
            data = await self._call("GET", instance, f"phone-exists/{n}") or {}
            out[n] = bool(data.get("exists"))
        return out

    async def find_sent(self, instance: str, number: str) -> list[SentRecord] | None:
        return None
