"""Running a sandbox's Starlette app with uvicorn: blocking, or in a background thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.applications import Starlette


def config(app: Starlette, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, lifespan="on"
    )


def serve(app: Starlette, host: str, port: int) -> None:
    """Run until interrupted (blocking)."""
    uvicorn.Server(config(app, host, port)).run()


@contextmanager
def in_thread(app: Starlette, host: str, port: int, name: str) -> Iterator[int]:
    """Run in a daemon thread; yields the bound port (``port=0`` picks a free one)."""
    server = uvicorn.Server(config(app, host, port))
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the {name} did not start")
        time.sleep(0.01)
    try:
        yield int(server.servers[0].sockets[0].getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(timeout=10)
