"""Which HTTP client the gateways should use: httpx, httpx2 and aiohttp, measured in one run.

Each client sends REQUESTS ``POST /message/sendText`` (the send path's call, JSON body,
``apikey`` header, JSON answer parsed) to a ``julia sandbox gateway`` *process* at zero
latency, CONCURRENCY at a time over one pooled client with the gateways' timeouts
(connect 5 s, read 15 s) and pool size (100). The sandbox runs in its own process, so
the CPU time measured (``time.process_time`` of this process) is the client's alone.
Clients are interleaved, each run once per round; figures are medians over RUNS
rounds: CPU milliseconds per request and requests per second.

    python benchmarks/http_clients.py [--requests 3000] [--concurrency 8] [--runs 3]

aiohttp (a dependency since the gateways speak it) is skipped, and said so, if absent.
The last line is a JSON object of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import httpx2

BODY = {"number": "5511999990001", "text": "bench"}
HEADERS = {"apikey": "bench"}
Sender = Callable[[int], Awaitable[None]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _run(send: Sender, n: int, concurrency: int) -> tuple[float, float]:
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            await send(i)

    await asyncio.gather(*(one(i) for i in range(min(50, n))))  # warm the pool
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return (time.process_time() - cpu) * 1000 / n, n / (time.perf_counter() - wall)


async def bench_httpx(module: Any, url: str, n: int, concurrency: int) -> tuple[float, float]:
    limits = module.Limits(max_connections=100, max_keepalive_connections=100)
    timeout = module.Timeout(15.0, connect=5.0)
    async with module.AsyncClient(limits=limits, timeout=timeout) as http:

        async def send(_: int) -> None:
            r = await http.post(url, json=BODY, headers=HEADERS)
            if r.status_code >= 400:
                raise RuntimeError(r.status_code)
            r.json()

        return await _run(send, n, concurrency)


async def bench_aiohttp(url: str, n: int, concurrency: int) -> tuple[float, float]:
    import aiohttp

    timeout = aiohttp.ClientTimeout(sock_connect=5.0, sock_read=15.0)
    connector = aiohttp.TCPConnector(limit=100)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

        async def send(_: int) -> None:
            async with http.post(url, json=BODY, headers=HEADERS) as r:
                if r.status >= 400:
                    raise RuntimeError(r.status)
                await r.json()

        return await _run(send, n, concurrency)


def has_aiohttp() -> bool:
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return False
    return True


async def amain(base: str, n: int, concurrency: int, runs: int) -> dict[str, Any]:
    clients: dict[str, Callable[[str], Awaitable[tuple[float, float]]]] = {
        "httpx": lambda u: bench_httpx(httpx, u, n, concurrency),
        "httpx2": lambda u: bench_httpx(httpx2, u, n, concurrency),
    }
    if has_aiohttp():
        clients["aiohttp"] = lambda u: bench_aiohttp(u, n, concurrency)
    got: dict[str, list[tuple[float, float]]] = {k: [] for k in clients}
    url = f"{base}/message/sendText/bench"
    async with httpx.AsyncClient() as control:
        for _ in range(runs):
            for name, bench in clients.items():
                got[name].append(await bench(url))
                await control.delete(f"{base}/_sandbox/messages")
    figures: dict[str, Any] = {"requests": n, "concurrency": concurrency, "runs": runs}
    for name, samples in got.items():
        cpu = statistics.median(s[0] for s in samples)
        rate = statistics.median(s[1] for s in samples)
        figures[f"{name}_cpu_ms_per_request"] = round(cpu, 3)
        figures[f"{name}_per_s"] = round(rate)
        print(f"{name:8} {cpu:6.3f} ms CPU per request, {rate:7,.0f} requests/s")
    if "aiohttp" not in clients:
        print("aiohttp  not installed: not measured")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    sandbox = subprocess.Popen(
        [sys.executable, "-m", "julia_cli", "sandbox", "gateway", "--port", str(port)],
        env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(400):
            try:
                if httpx.get(f"{base}/_sandbox/calls", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        figures = asyncio.run(amain(base, args.requests, args.concurrency, args.runs))
    finally:
        sandbox.terminate()
        sandbox.wait(10)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
