"""The Chatwoot Application API client (header ``api_access_token``).

Every call goes through the ``chatwoot`` circuit breaker and the retry helper
(``JULIA_HANDOFF_NOTIFY_ATTEMPTS`` attempts, backoff with full jitter). Only the
endpoints the handoff uses: contacts (search, create, contact inboxes),
conversations (create), messages, labels (read, then write the union: the endpoint
replaces the whole set) and ``toggle_status``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from julia.core.app import App
from julia.core.errors import ConfigError, NotifyError
from julia.core.settings import secret
from julia.resilience.breaker import breakers
from julia.resilience.retry import retry


def configured(app: App) -> bool:
    s = app.settings
    return bool(
        s.chatwoot_url
        and secret(s.chatwoot_api_token)
        and s.chatwoot_account_id
        and s.chatwoot_inbox_id
    )


@dataclass(frozen=True)
class Contact:
    id: int
    source_id: str | None  # of its contact inbox in our inbox, when it has one


class Chatwoot:
    """One account and API inbox of a Chatwoot installation."""

    def __init__(self, app: App) -> None:
        if not configured(app):
            raise ConfigError(
                "Chatwoot is not configured: set JULIA_CHATWOOT_URL, JULIA_CHATWOOT_API_TOKEN,"
                " JULIA_CHATWOOT_ACCOUNT_ID and JULIA_CHATWOOT_INBOX_ID"
            )
        s = app.settings
        self.app = app
        self.base = f"{str(s.chatwoot_url).rstrip('/')}/api/v1/accounts/{s.chatwoot_account_id}"
        self.inbox_id = int(s.chatwoot_inbox_id or 0)
        self.headers = {"api_access_token": secret(s.chatwoot_api_token) or ""}

    async def _once(self, method: str, path: str, body: Any, params: Any) -> Any:
        response = await self.app.http.request(
            method,
            self.base + path,
            json=body,
            params=params,
            headers=self.headers,
            timeout=self.app.settings.chatwoot_timeout_s,
        )
        if response.status_code >= 300:
            retry_after = response.headers.get("retry-after")
            raise NotifyError(
                f"Chatwoot answered {response.status_code} to {method} {path}",
                status_code=response.status_code,
                retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
            )
        return response.json() if response.content else {}

    async def call(self, method: str, path: str, body: Any = None, params: Any = None) -> Any:
        breaker = breakers(self.app).get("chatwoot")

        async def attempt() -> Any:
            return await breaker.call(self._once, method, path, body, params)

        return await retry(
            self.app, "chatwoot", attempt, attempts=self.app.settings.handoff_notify_attempts
        )

    # --- contacts ---------------------------------------------------------------

    def _contact(self, data: dict[str, Any]) -> Contact:
        inboxes = data.get("contact_inboxes") or []
        source = next(
            (
                ci.get("source_id")
                for ci in inboxes
                if (ci.get("inbox") or {}).get("id", ci.get("inbox_id")) == self.inbox_id
            ),
            None,
        )
        return Contact(int(data["id"]), source)

    async def find_contact(self, phone: str) -> Contact | None:
        found = await self.call("GET", "/contacts/search", params={"q": phone})
        for c in found.get("payload") or []:
            if c.get("phone_number") == phone:
                return self._contact(c)
        return None

    async def create_contact(self, phone: str, name: str) -> Contact:
        body = {
            "inbox_id": self.inbox_id,
            "name": name,
            "phone_number": phone,
            "identifier": phone.lstrip("+") + "@s.whatsapp.net",
        }
        data = await self.call("POST", "/contacts", body)
        payload = data.get("payload", data)
        contact = payload.get("contact", payload)
        found = self._contact(contact)
        source = (payload.get("contact_inbox") or {}).get("source_id")
        return Contact(found.id, found.source_id or source)

    async def contact_inbox(self, contact_id: int) -> str:
        data = await self.call(
            "POST", f"/contacts/{contact_id}/contact_inboxes", {"inbox_id": self.inbox_id}
        )
        return str(data["source_id"])

    # --- conversations ------------------------------------------------------------

    async def create_conversation(self, contact_id: int, source_id: str) -> int:
        body = {
            "source_id": source_id,
            "inbox_id": self.inbox_id,
            "contact_id": contact_id,
            "status": "open",
        }
        return int((await self.call("POST", "/conversations", body))["id"])

    async def post(
        self, conversation_id: int, content: str, *, message_type: str, private: bool = False
    ) -> int:
        body = {"content": content, "message_type": message_type, "private": private}
        data = await self.call("POST", f"/conversations/{conversation_id}/messages", body)
        return int(data["id"])

    async def labels(self, conversation_id: int) -> list[str]:
        data = await self.call("GET", f"/conversations/{conversation_id}/labels")
        return [str(x) for x in data.get("payload") or []]

    async def add_label(self, conversation_id: int, label: str) -> list[str]:
        """Add ``label`` keeping the others (the endpoint replaces the whole set)."""
        current = await self.labels(conversation_id)
        if label in current:
            return current
        wanted = [*current, label]
        await self.call("POST", f"/conversations/{conversation_id}/labels", {"labels": wanted})
        return wanted

    async def remove_label(self, conversation_id: int, label: str) -> None:
        current = await self.labels(conversation_id)
        if label in current:
            keep = [x for x in current if x != label]
            await self.call("POST", f"/conversations/{conversation_id}/labels", {"labels": keep})

    async def toggle_status(self, conversation_id: int, status: str) -> None:
        await self.call(
            "POST", f"/conversations/{conversation_id}/toggle_status", {"status": status}
        )
