"""``julia demo``: the whole system on one machine, with ``julia top`` on screen."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import signal
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from julia.core import logs
from julia.core.app import App
from julia.core.errors import InvalidInput
from julia.core.redact import mask_url
from julia.demo import report as demo_report
from julia.demo import run as demo_run
from julia.ops import overview
from julia_cli.base import settings
from julia_cli.commands import sandbox as sandbox_cmd
from julia_cli.commands.ops import render_top
from julia_cli.render import err_console


def capabilities() -> demo_run.Capabilities:
    """What this build can play: its sandbox commands and its library packages."""
    sandboxes = {c.name for c in sandbox_cmd.app.registered_commands}

    def has(module: str) -> bool:
        return importlib.util.find_spec(module) is not None

    agent = has("julia.agent") and "llm" in sandboxes
    return demo_run.Capabilities(
        llm=agent,
        chatwoot="chatwoot" in sandboxes and has("julia.handoff"),
        campanha=has("julia.campanhas"),
        agent=agent,
    )


def _summary(rep: demo_report.Report) -> Table:
    t = Table(title="julia demo: report", show_header=False)
    rows: list[tuple[str, Any]] = [
        ("sent / delivered", f"{rep.sent} / {rep.delivered}"),
        ("doctors who replied", rep.replied),
        ("shifts reserved", rep.reserved),
        ("handoffs", f"{rep.handoffs} {rep.handoffs_ended or ''}"),
        ("opt-outs (violations)", f"{rep.opt_outs} ({rep.opt_out_violations})"),
        ("alerts", f"{rep.alerts} {rep.alerts_by_kind or ''}"),
        ("sent per chip", rep.by_chip),
        ("incident", rep.incident),
        ("duplicates (must be 0)", rep.duplicates),
        ("lost (must be 0)", rep.lost),
        ("not terminal (must be 0)", rep.not_terminal),
    ]
    rows += [(f"check: {k}", v) for k, v in rep.checks.items()]
    for k, v in rows:
        t.add_row(k, escape(str(v)))
    return t


def demo(
    headless: Annotated[
        bool, typer.Option("--headless", help="No live view; the last line is the JSON report.")
    ] = False,
    duration: Annotated[
        float,
        typer.Option(
            "--duration", min=10, help="Seconds the story runs (plus setup and settling)."
        ),
    ] = 90.0,
) -> None:
    """Run Júlia end to end on this machine: a campaign, doctors answering, the 403 incident."""
    s = settings()
    logs.configure("warning", s.log_format)  # the demo narrates; its processes log to files
    caps = capabilities()
    if not sys.executable:
        raise InvalidInput("cannot find the Python interpreter to start the components")
    console = Console(stderr=headless)
    live: Live | None = None

    def say(line: str) -> None:
        (live.console if live else err_console if headless else console).print(
            escape(line), highlight=False
        )

    async def watch(app: App, stop: asyncio.Event) -> None:
        nonlocal live
        with Live(console=console, auto_refresh=False) as view:
            live = view
            try:
                while not stop.is_set():
                    with contextlib.suppress(Exception):  # a frame may fail mid-migration
                        view.update(render_top(await overview.overview(app)), refresh=True)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), app.settings.top_refresh_s)
            finally:
                live = None

    async def main() -> demo_run.Outcome:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        for sig in (signal.SIGINT, signal.SIGTERM):  # stop the children, then exit
            loop.add_signal_handler(sig, task.cancel)
        return await demo_run.run(
            s,
            duration_s=duration,
            capabilities=caps,
            say=say,
            watch=None if headless else watch,
        )

    plays = ", ".join(k for k, v in vars(caps).items() if v) or "the core (no agent yet)"
    say(f"julia demo: a {duration:.0f}s story; this build plays: {plays}")
    try:
        outcome = asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        err_console.print("interrupted: every process was stopped")
        raise typer.Exit(130) from None
    rep = outcome.report
    (err_console if headless else console).print(_summary(rep))
    for line in rep.look_next:
        say(f"look next: {line}")
    sys.stderr.flush()
    keys = {
        "sent",
        "delivered",
        "replied",
        "reserved",
        "handoffs",
        "handoffs_ended",
        "opt_outs",
        "opt_out_violations",
        "alerts",
        "alerts_by_kind",
        "duplicates",
        "lost",
        "not_terminal",
        "by_chip",
        "incident",
        "checks",
        "ok",
    }
    data = {k: v for k, v in rep.as_dict().items() if k in keys}
    data["database"] = mask_url(outcome.database_url)
    typer.echo(json.dumps(data, default=str, ensure_ascii=False))
    if not rep.ok:
        raise typer.Exit(1)
