"""What this installation is: version, which Postgres and Redis, migration state."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from julia import __version__
from julia.core import migrations
from julia.core.app import resolve_endpoints
from julia.core.redact import mask_url

if TYPE_CHECKING:
    from julia.settings import Settings


async def describe(settings: Settings) -> dict[str, Any]:
    """The facts ``julia info`` prints; starts the embedded servers if they are in use."""
    endpoints = await asyncio.to_thread(resolve_endpoints, settings)
    st = await migrations.status(endpoints.database_url, settings.migrations_dir)
    return {
        "version": __version__,
        "home": str(settings.home),
        "database": {
            "url": mask_url(endpoints.database_url),
            "embedded": endpoints.database_embedded,
        },
        "redis": {"url": mask_url(endpoints.redis_url), "embedded": endpoints.redis_embedded},
        "migrations": {
            "applied": [m.name for m in st.applied],
            "pending": st.pending,
            "changed": [m.name for m in st.applied if m.changed],
        },
    }
