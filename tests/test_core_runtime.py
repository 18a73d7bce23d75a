"""How a daemon runs its loop: ``julia.core.runtime.run``."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest
import uvloop

from julia.core import runtime


@pytest.fixture
def restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.set_threshold(*threshold)
    gc.unfreeze()


def test_a_daemon_runs_on_uvloop_with_rarer_young_collections(restore_gc: None) -> None:
    before = gc.get_threshold()
    garbage = [[] for _ in range(100)]  # built before it: frozen out of the scans

    async def main() -> type[asyncio.AbstractEventLoop]:
        await asyncio.sleep(0)
        return type(asyncio.get_running_loop())

    assert runtime.run(main()) is uvloop.Loop
    assert gc.get_threshold() == (runtime.GC_GEN0_THRESHOLD, *before[1:])
    assert gc.get_freeze_count() >= len(garbage)
