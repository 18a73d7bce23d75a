"""How a long-running process runs its event loop: on uvloop when it is installed (faster
sockets), with the garbage collector set for a service that allocates per message."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

#: Allocations between two collections of the youngest generation (CPython's default is
#: 700). A worker allocates thousands of short-lived objects per batch and almost none in
#: cycles: collecting every 700 cost about 0.04 ms of CPU per send (benchmarks/chips.py).
GC_GEN0_THRESHOLD = 50_000


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` as a daemon's loop (``julia worker``): what exists before it (modules,
    settings) is frozen out of the collector's scans, young collections are rarer, and
    the loop is uvloop's when it is installed."""
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
