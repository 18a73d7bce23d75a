"""Webhook intake: how many ``messages.upsert`` the shim accepts per second, and how fast.

Starts ``julia shim serve`` (uvicorn) on loopback against a scratch database,
then posts recorded-shape Evolution ``messages.upsert`` bodies (the fixture's
shape, a fresh message id and one of 5,000 doctors each) from THIS process, a
separate one, over plain HTTP/1.1 keep-alive connections:

1. capacity: closed loop, ``--connections`` connections back to back (median of 3 runs);
2. sustained: open loop at ``--rate`` requests/s for ``--seconds`` (median of 3 runs);
   latency counts from the moment a request was due, so a client or server that
   falls behind shows up in p99 instead of being hidden.

Then it checks that every request sent is stored exactly once.

    python benchmarks/webhooks.py [--rate 3000] [--seconds 5] [--workers 2]

JULIA_DATABASE_URL / JULIA_REDIS_URL name the servers (else the embedded ones).
The last line is a JSON object of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg

from julia.core import migrations
from julia.core.app import resolve_endpoints
from julia.settings import Settings

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
TOKEN = "bench-webhook-token-0123456789abcdef"
HOST = "127.0.0.1"
RUNS = 3


def template() -> dict[str, Any]:
    path = FIXTURE / "evolution_messages_upsert_text.json"
    if path.exists():
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    return {  # the same recorded shape, when the recorded fixture is missing
        "event": "messages.upsert",
        "instance": "caldasIA",
        "data": {
            "key": {"remoteJid": "556481140676@s.whatsapp.net", "fromMe": False, "id": "X"},
            "pushName": "Mayssa Ferreira",
            "status": "DELIVERY_ACK",
            "message": {"conversation": "Oii"},
            "messageType": "conversation",
            "messageTimestamp": 1750876007,
            "instanceId": "f86c8b02-29df-4de1-ac9d-1e8c78d7475c",
            "source": "android",
        },
        "date_time": "2025-06-25T15:26:47.781Z",
        "sender": "556492469875@s.whatsapp.net",
        "server_url": "https://evolution.example",
        "apikey": "493ED0BEB1A8-47F2-A6EE-731DBFDB99D2",
    }


class Bodies:
    """Pre-built HTTP requests, each a new message (unique id), round-robin over doctors."""

    def __init__(self, port: int) -> None:
        self.base = template()
        self.port = port
        self.n = 0

    def take(self, count: int) -> list[bytes]:
        out = []
        for _ in range(count):
            self.n += 1
            body = copy.deepcopy(self.base)
            body["data"]["key"]["id"] = f"BENCH{self.n:010d}{uuid.uuid4().hex[:6].upper()}"
            body["data"]["key"]["remoteJid"] = f"55119{self.n % 5000:08d}@s.whatsapp.net"
            body["data"]["message"]["conversation"] = f"oi, tem plantão? #{self.n}"
            raw = json.dumps(body).encode()
            out.append(
                b"POST /webhooks/evolution HTTP/1.1\r\nHost: %s:%d\r\n"
                b"Content-Type: application/json\r\nX-Webhook-Token: %s\r\n"
                b"Content-Length: %d\r\n\r\n%s"
                % (HOST.encode(), self.port, TOKEN.encode(), len(raw), raw)
            )
        return out


class Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.accepted = 0
        self.errors = 0


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return status, await reader.readexactly(length)


def record(tally: Tally, status: int, body: bytes, started: float) -> None:
    tally.latencies.append((time.perf_counter() - started) * 1000)
    if status == 200 and b'"accepted"' in body:
        tally.accepted += 1
    else:
        tally.errors += 1


async def closed_loop(port: int, requests: list[bytes], connections: int) -> tuple[float, Tally]:
    tally = Tally()
    chunks = [requests[i::connections] for i in range(connections)]

    async def one(chunk: list[bytes]) -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        for req in chunk:
            t0 = time.perf_counter()
            status, body = await exchange(reader, writer, req)
            record(tally, status, body, t0)
        writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(one(c) for c in chunks))
    return len(requests) / (time.perf_counter() - t0), tally


async def open_loop(
    port: int, requests: list[bytes], rate: float, connections: int
) -> tuple[float, Tally]:
    """Send request i at start + i/rate on the first free connection; latency from due time."""
    tally = Tally()
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

    async def conn() -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        while (item := await queue.get()) is not None:
            due, req = item
            status, body = await exchange(reader, writer, req)
            record(tally, status, body, due)
        writer.close()

    workers = [asyncio.create_task(conn()) for _ in range(connections)]
    await asyncio.sleep(0.05)  # connections open before the clock starts
    start = time.perf_counter()
    for i, req in enumerate(requests):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        queue.put_nowait((due, req))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    return len(requests) / (time.perf_counter() - start), tally


def cpu_seconds(root: int) -> float:
    """CPU time (user + system) of a process and its children (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry), int(fields[1])
        if pid == root or ppid == root:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def start_shim(url: str, redis_url: str, port: int, workers: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JULIA_")} | {
        "JULIA_DATABASE_URL": url,
        "JULIA_REDIS_URL": redis_url,
        "JULIA_WEBHOOK_TOKEN": TOKEN,
        "JULIA_LOG_LEVEL": "WARNING",
        "JULIA_LOG_FORMAT": "json",
        "JULIA_DB_POOL_MIN": "4",
        "JULIA_DB_POOL_MAX": "16",
    }
    julia = Path(sys.executable).parent / "julia"
    proc = subprocess.Popen(
        [str(julia), "shim", "serve", "--host", HOST, "--port", str(port),
         "--workers", str(workers)],
        env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://{HOST}:{port}/health/ready", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("the shim did not start")
        time.sleep(0.1)


async def bench(port: int, args: argparse.Namespace, shim_pid: int) -> dict[str, Any]:
    bodies = Bodies(port)
    sent = accepted = errors = 0

    def count(t: Tally) -> None:
        nonlocal sent, accepted, errors
        sent += len(t.latencies)
        accepted += t.accepted
        errors += t.errors

    _, warm = await closed_loop(port, bodies.take(2000), args.connections)
    count(warm)
    capacity: list[float] = []
    cpu0, client0 = cpu_seconds(shim_pid), time.process_time()
    for _ in range(RUNS):
        rate, tally = await closed_loop(port, bodies.take(args.capacity), args.connections)
        count(tally)
        capacity.append(rate)
        print(f"capacity: {rate:,.0f} webhooks/s ({args.connections} connections)")
    shim_ms = (cpu_seconds(shim_pid) - cpu0) * 1000 / (RUNS * args.capacity)
    client_ms = (time.process_time() - client0) * 1000 / (RUNS * args.capacity)
    print(f"CPU per webhook: shim {shim_ms:.3f} ms, load generator {client_ms:.3f} ms")
    p50s, p99s, achieved = [], [], []
    for _ in range(RUNS):
        requests = bodies.take(int(args.rate * args.seconds))
        rate, tally = await open_loop(port, requests, args.rate, args.connections)
        count(tally)
        p50s.append(pct(tally.latencies, 50))
        p99s.append(pct(tally.latencies, 99))
        achieved.append(rate)
        print(
            f"sustained {args.rate:,.0f}/s for {args.seconds:g} s: achieved {rate:,.0f}/s,"
            f" p50 {p50s[-1]:.2f} ms, p99 {p99s[-1]:.2f} ms, errors {tally.errors}"
        )
    return {
        "webhooks_per_s": round(statistics.median(capacity)),
        "sustained_rate": args.rate,
        "sustained_achieved_per_s": round(statistics.median(achieved)),
        "p50_ms": round(statistics.median(p50s), 2),
        "p99_ms": round(statistics.median(p99s), 2),
        "shim_cpu_ms_per_webhook": round(shim_ms, 3),
        "client_cpu_ms_per_webhook": round(client_ms, 3),
        "sent": sent,
        "accepted": accepted,
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=3000, help="Sustained requests/s.")
    parser.add_argument("--seconds", type=float, default=5, help="Length of a sustained run.")
    parser.add_argument("--capacity", type=int, default=10000, help="Requests per capacity run.")
    parser.add_argument("--connections", type=int, default=32, help="Keep-alive connections.")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes.")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    base = Settings()
    endpoints = resolve_endpoints(base)
    name = f"julia_bench_{uuid.uuid4().hex[:8]}"
    url = psycopg.conninfo.make_conninfo(endpoints.database_url, dbname=name)
    with psycopg.connect(endpoints.database_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    port = free_port()
    proc = None
    try:
        asyncio.run(migrations.migrate(url))
        proc = start_shim(url, endpoints.redis_url, port, args.workers)
        figures = asyncio.run(bench(port, args, proc.pid))
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT count(*), count(DISTINCT provider_message_id)"
                               " FROM mensagens_recebidas").fetchone()  # fmt: skip
        assert row is not None
        figures["stored"], distinct = row
        print(f"sent {figures['sent']:,}, stored {figures['stored']:,} ({distinct:,} distinct)")
        figures["stored_equals_sent"] = figures["stored"] == figures["sent"] == distinct
        figures["workers"] = args.workers
        figures["cpus"] = os.cpu_count()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(15)
        with psycopg.connect(endpoints.database_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
