"""Distributed locks: Redis ``SET NX PX`` with an owner token; only the owner releases.

    async with lock(app, "job:rescue") as held:                 # LockNotAcquired if busy
        ...
    async with lock(app, "job:rescue", required=False) as held:  # None if busy
        if held is None:
            return

``renew=True`` keeps extending the lock (every third of its ttl) while the block
runs, for long work; if the lock is lost anyway (Redis restarted, a long pause),
``held.lost`` becomes True so the work can stop. A lock's lifetime is enforced by
Redis's own clock (``PX``), so waiting and renewal use real time, not ``app.clock``.
If Redis is unreachable no lock can be taken: ``StorageError``, or None when
``required=False``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from julia.core.app import App
from julia.core.errors import LockNotAcquired, StorageError
from julia.core.logs import get_logger
from julia.resilience._shared import REDIS_ERRORS, script

log = get_logger(__name__)


@dataclass
class Lock:
    """One lock on ``name``, owned through a random token."""

    app: App
    name: str
    ttl_s: float
    token: str = ""
    held: bool = False
    lost: bool = False

    @property
    def key(self) -> str:
        return self.app.keys.key("lock", self.name)

    async def acquire(self, wait_s: float = 0.0) -> bool:
        """Take the lock, polling for up to ``wait_s``; False if someone else holds it."""
        self.token = secrets.token_hex(16)
        deadline = time.monotonic() + wait_s
        while True:
            ok = await self.app.redis.set(self.key, self.token, nx=True, px=int(self.ttl_s * 1000))
            if ok:
                self.held, self.lost = True, False
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(min(0.05 + random.random() * 0.05, wait_s))

    async def release(self) -> bool:
        """Release if still ours; False if it had expired or was taken over."""
        if not self.held:
            return False
        self.held = False
        released = await script(self.app, "lock_release")(keys=[self.key], args=[self.token])
        return int(released) == 1

    async def renew(self, ttl_s: float | None = None) -> bool:
        """Extend the lock to ``ttl_s`` from now if still ours; marks it lost otherwise."""
        ms = int((ttl_s or self.ttl_s) * 1000)
        ok = int(await script(self.app, "lock_renew")(keys=[self.key], args=[self.token, ms]))
        if not ok:
            self.lost = True
            log.warning("lock.lost", name=self.name)
        return ok == 1


async def _keep_renewing(held: Lock) -> None:
    while held.held and not held.lost:
        await asyncio.sleep(held.ttl_s / 3)
        try:
            await held.renew()
        except REDIS_ERRORS as exc:
            log.warning("lock.renew_failed", name=held.name, error=str(exc))


@asynccontextmanager
async def lock(
    app: App,
    name: str,
    *,
    ttl_s: float | None = None,
    wait_s: float = 0.0,
    renew: bool = False,
    required: bool = True,
) -> AsyncIterator[Lock | None]:
    """Hold the distributed lock ``name`` for the block (see the module docstring)."""
    held = Lock(app, name, ttl_s or app.settings.lock_ttl_s)
    try:
        acquired = await held.acquire(wait_s)
    except REDIS_ERRORS as exc:
        if required:
            raise StorageError(f"Redis unreachable, cannot lock {name}: {exc}") from exc
        log.warning("lock.unavailable", name=name, error=str(exc))
        acquired = False
    if not acquired:
        if required:
            raise LockNotAcquired(name)
        yield None
        return
    renewer = asyncio.create_task(_keep_renewing(held)) if renew else None
    try:
        yield held
    finally:
        if renewer is not None:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
        try:
            await held.release()
        except REDIS_ERRORS as exc:  # it expires by itself
            log.warning("lock.release_failed", name=name, error=str(exc))
