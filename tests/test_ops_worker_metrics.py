"""The worker's own ``/metrics`` shows the shared state (live workers, queue depth, Redis
memory), as the shim's does; it said ``julia_workers_alive 0`` and no queue depth."""

from __future__ import annotations

import asyncio
import socket

import httpx

from julia.core.app import App
from julia.fila import queue
from julia.ops import heartbeat, monitors


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_worker_metrics_show_live_workers_and_queue_depth(app: App) -> None:
    port = _free_port()
    app.settings.worker_metrics_port = port
    app.settings.worker_metrics_refresh_s = 0.05
    await heartbeat.register(app, "w-metrics", ["fila", "ops"])
    await queue.enqueue(app, queue.NewMessage(telefone="11999990001", texto="Oi"))
    stop = asyncio.Event()
    task = asyncio.create_task(monitors.worker_consumer(app, stop, "w-metrics"))
    try:
        text = ""
        async with httpx.AsyncClient() as client:
            for _ in range(100):
                await asyncio.sleep(0.05)
                try:
                    text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
                except httpx.TransportError:
                    continue
                if 'julia_queue_depth{status="pendente"} 1.0' in text:
                    break
        assert 'julia_queue_depth{status="pendente"} 1.0' in text
        alive = [ln for ln in text.splitlines() if ln.startswith("julia_workers_alive ")]
        assert alive and float(alive[0].split()[1]) >= 1
        mem = [ln for ln in text.splitlines() if ln.startswith("julia_redis_used_memory_bytes ")]
        assert mem and float(mem[0].split()[1]) > 0
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
