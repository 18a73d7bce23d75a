"""The application container: every resource Júlia uses, opened and closed together.

    async with App.open(settings) as app:
        await medicos.list_medicos(app)

No module-level clients exist anywhere; whatever needs Postgres, Redis, HTTP or
the time takes an ``App``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import redis.asyncio as aioredis
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from julia.core import local
from julia.core.clock import Clock
from julia.core.errors import StorageError
from julia.core.keys import Keys
from julia.core.settings import secret

if TYPE_CHECKING:
    from julia.settings import Settings


@dataclass(frozen=True)
class Endpoints:
    """Which Postgres and Redis are in use, and whether they are the embedded ones."""

    database_url: str
    database_embedded: bool
    redis_url: str
    redis_embedded: bool


def resolve_endpoints(settings: Settings) -> Endpoints:
    """The configured URLs, starting the embedded servers for those left unset."""
    db = secret(settings.database_url)
    rd = secret(settings.redis_url)
    return Endpoints(
        database_url=db or local.ensure_postgres(settings.home),
        database_embedded=db is None,
        redis_url=rd or local.ensure_redis(settings.home),
        redis_embedded=rd is None,
    )


def connection_kwargs(settings: Settings) -> dict[str, Any]:
    """psycopg connection options shared by the pool and one-off connections."""
    return {
        "autocommit": True,
        "row_factory": dict_row,
        # None disables server-side prepared statements (transaction poolers).
        "prepare_threshold": 5 if settings.db_prepared_statements else None,
    }


@dataclass
class App:
    """Postgres pool, Redis client, shared HTTP client, clock and key builder."""

    settings: Settings
    endpoints: Endpoints
    pool: AsyncConnectionPool[Any]
    redis: aioredis.Redis
    http: httpx.AsyncClient
    clock: Clock
    keys: Keys
    #: Per-capability singletons created on first use (breakers, gateways...).
    extensions: dict[str, Any] = field(default_factory=dict)

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings, *, clock: Clock | None = None) -> AsyncIterator[App]:
        """Open the container on ``settings`` (the faces build them: ``Settings()``)."""
        endpoints = await asyncio.to_thread(resolve_endpoints, settings)
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            endpoints.database_url,
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            kwargs=connection_kwargs(settings),
            timeout=settings.db_connect_timeout_s,
            open=False,
            name="julia",
        )
        try:
            await pool.open(wait=settings.db_pool_min > 0, timeout=settings.db_connect_timeout_s)
        except Exception as exc:
            await pool.close()
            raise StorageError(f"cannot connect to Postgres: {exc}") from exc
        redis_client = aioredis.from_url(
            endpoints.redis_url,
            decode_responses=True,
            socket_connect_timeout=2.0,
            socket_timeout=2.0,
            health_check_interval=30,
        )
        http = httpx.AsyncClient(
            timeout=httpx.Timeout(
                settings.http_read_timeout_s, connect=settings.http_connect_timeout_s
            ),
            limits=httpx.Limits(
                max_connections=settings.http_max_connections,
                max_keepalive_connections=settings.http_max_connections,
            ),
        )
        app = cls(
            settings=settings,
            endpoints=endpoints,
            pool=pool,
            redis=redis_client,
            http=http,
            clock=clock or Clock(),
            keys=Keys(settings.redis_namespace),
        )
        try:
            yield app
        finally:
            # Clients a capability built lazily (the model SDK's) register their closing here.
            for close in app.extensions.pop("on_close", []):
                with contextlib.suppress(Exception):  # closing must not hide the real outcome
                    await close()
            await http.aclose()
            await redis_client.aclose()
            await pool.close()
