"""The SDK client, built once per App from the settings (``app.extensions["anthropic"]``).

The ``anthropic`` 2.x SDK brings its own HTTP stack (httpx2): it is given its timeout
(30 s, 5 s to connect) and retries here, never the App's ``httpx`` client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anthropic

from julia.core.app import App
from julia.core.settings import secret

if TYPE_CHECKING:
    from julia.settings import Settings

#: Sent when only a base URL is configured (the sandbox model needs no key).
SANDBOX_KEY = "sandbox"


def configured(settings: Settings) -> bool:
    """Whether a model can be called: a key, or a base URL (the sandbox model)."""
    return bool(secret(settings.anthropic_api_key) or settings.anthropic_base_url)


def why_not(settings: Settings) -> str:
    return (
        "no model configured: set JULIA_ANTHROPIC_API_KEY (or ANTHROPIC_API_KEY), or"
        " JULIA_ANTHROPIC_BASE_URL to a `julia sandbox llm`"
    )


def client(app: App) -> anthropic.AsyncAnthropic:
    """The App's ``AsyncAnthropic`` (created on first use; closed with :func:`close`)."""
    found = app.extensions.get("anthropic")
    if found is None:
        s = app.settings
        found = anthropic.AsyncAnthropic(
            api_key=secret(s.anthropic_api_key) or SANDBOX_KEY,
            base_url=s.anthropic_base_url or None,
            timeout=anthropic.Timeout(s.llm_timeout_s, connect=s.llm_connect_timeout_s),
            max_retries=s.llm_max_retries,
        )
        app.extensions["anthropic"] = found
        app.extensions.setdefault("on_close", []).append(found.close)
    return found


async def close(app: App) -> None:
    found = app.extensions.pop("anthropic", None)
    if found is not None:
        await found.close()
