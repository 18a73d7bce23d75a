"""Operations: ``julia scheduler``, ``julia jobs``, ``julia health``, ``julia alerts``,
``julia top``. (The Slack sandbox is ``julia sandbox slack``.)"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from typing import Annotated

import typer

from julia.notify import alerts
from julia.ops import health, overview
from julia.ops.jobs import runner
from julia.ops.scheduler import run_scheduler
from julia_cli import render
from julia_cli.base import JsonOpt, JuliaTyper, daemon, open_app
from julia_cli.dashboard import render_top

jobs_app = JuliaTyper(name="jobs", help="Scheduled jobs: list them, run one by hand.")
alerts_app = JuliaTyper(name="alerts", help="Alerts raised by the checks and the capabilities.")


async def scheduler(
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Run only this job (repeatable).")
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port", help="Prometheus port, 0 off (env: JULIA_SCHEDULER_METRICS_PORT)."
        ),
    ] = None,
) -> None:
    """Run the periodic jobs until SIGTERM/SIGINT (any number may run; each tick runs once)."""
    daemon()
    async with open_app() as a:
        names = runner.scheduled_jobs(a)
        render.notice(f"scheduler: {len(only or names)} job(s), time zone {a.settings.timezone}")
        await run_scheduler(a, only=only, metrics_port=metrics_port)
    render.notice("scheduler stopped")


@jobs_app.command("list")
async def jobs_list(json_: JsonOpt = False) -> None:
    """Every job: schedule, next run, last run and its outcome."""
    async with open_app() as a:
        rows = await runner.list_jobs(a)
    if json_:
        render.print_json(rows)
        return
    for r in rows:
        if not r["available"]:
            r["outcome"] = f"unavailable: {r['reason']}"
        elif r["last_status"] is not None:
            r["outcome"] = f"{r['last_status']} ({render.fmt(r['last_items'])} items)" + (
                f": {r['last_error']}" if r["last_error"] else "")  # fmt: skip
    render.table(rows, ["name", "schedule", "next_run", "last_run", "outcome"], title="jobs")


@jobs_app.command("run")
async def jobs_run(
    name: Annotated[str, typer.Argument(help="The job's name (see julia jobs list).")],
    json_: JsonOpt = False,
) -> None:
    """Run one job now (takes its lock; recorded in job_executions). Exit 1 if it failed."""
    async with open_app() as a:
        execution = await runner.run_job(a, name, manual=True)
        await alerts.flush(a)
    if json_:
        render.print_json(execution.as_dict())
    elif execution.status == "skipped":
        render.message(f"{name}: skipped ({execution.error})")
    else:
        render.message(
            f"{name}: {execution.status}, {render.fmt(execution.items)} item(s)"
            + (f": {execution.error}" if execution.error else "")
        )
    if execution.status == "error":
        raise typer.Exit(1)


@jobs_app.command("history")
async def jobs_history(
    name: Annotated[str | None, typer.Argument(help="Only this job.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many runs.", min=1)] = 30,
    json_: JsonOpt = False,
) -> None:
    """Recent runs, newest first."""
    async with open_app() as a:
        rows = [e.as_dict() for e in await runner.history(a, name, limit)]
    if json_:
        render.print_json(rows)
        return
    render.table(rows, ["id", "job", "trigger", "tick", "started_at", "status", "items", "error",
                        "runner"])  # fmt: skip


async def health_cmd(
    deep: Annotated[
        bool, typer.Option("--deep", help="Per-chip rows and each circuit's transitions (24 h).")
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Score every component (0-100) and the whole; exit 0 when healthy, 1 otherwise."""
    async with open_app() as a:
        report = await health.check(a, deep=deep)
    if json_:
        render.print_json(report.as_dict())
    else:
        style = {"healthy": "green", "degraded": "yellow", "unhealthy": "bold red"}
        render.console.print(
            f"[{style.get(report.status, '')}]{report.status}[/] score {report.score}"
            f" (mean {report.mean_score})",
            highlight=False,
        )
        render.table((c.as_dict() for c in report.components),
                     ["name", "status", "score", "summary"])  # fmt: skip
    if not report.healthy:
        raise typer.Exit(1)


@alerts_app.command("list")
async def alerts_list(
    since: Annotated[
        str | None, typer.Option("--since", help="30m, 2h, 7d, or an ISO date/time.")
    ] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="Only this kind.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many alerts.", min=1)] = 100,
    json_: JsonOpt = False,
) -> None:
    """Alerts, newest first; repeats inside the cooldown are counted, not listed."""
    async with open_app() as a:
        rows = await alerts.list_alerts(
            a, since=alerts.parse_since(since, a.clock.now()), kind=kind, limit=limit
        )
    if json_:
        render.print_json([r.as_dict() for r in rows])
        return
    render.table(
        ({**r.as_dict(), "slack": "sent" if r.notified_at else (r.notify_error or "-")}
         for r in rows),
        ["id", "created_at", "severity", "kind", "message", "repeats", "slack"],
        title=f"{len(rows)} alert(s)",
    )  # fmt: skip


@contextlib.contextmanager
def _keys(stop: asyncio.Event, loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """Read single keys from a terminal; ``q`` sets ``stop``."""
    if not sys.stdin.isatty():
        yield
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)

    def on_key() -> None:
        if os.read(fd, 1).lower() == b"q":
            stop.set()

    tty.setcbreak(fd)
    loop.add_reader(fd, on_key)
    try:
        yield
    finally:
        loop.remove_reader(fd)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def top(
    once: Annotated[bool, typer.Option("--once", help="Print one frame and exit.")] = False,
) -> None:
    """Live dashboard: queue and throughput, workers, chips, circuits, alerts, handoffs."""
    from rich.console import Console
    from rich.live import Live

    console = Console()  # wraps long lines (the shared console soft-wraps for tables)
    async with open_app() as a:
        if once:
            console.print(render_top(await overview.overview(a), live=False))
            return
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, stop.set)  # Ctrl-C quits cleanly, like q
        with _keys(stop, loop), Live(render_top(await overview.overview(a)),
                                     console=console, screen=False,
                                     auto_refresh=False) as live:  # fmt: skip
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), a.settings.top_refresh_s)
                if not stop.is_set():
                    live.update(render_top(await overview.overview(a)), refresh=True)


def register(app: typer.Typer) -> None:
    """Add the operations commands to the root app (one line in main.py)."""
    app.command("scheduler")(scheduler)
    app.add_typer(jobs_app)
    app.command("health")(health_cmd)
    app.add_typer(alerts_app)
    app.command("top")(top)
