"""``julia worker``: run the worker (fila consumer and the others), and list live workers."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from julia.core import runtime
from julia.ops import heartbeat, worker
from julia_cli import render
from julia_cli.base import JsonOpt, JuliaTyper, _run, daemon, open_app

app = JuliaTyper(
    name="worker",
    help="Run the worker (outbound queue and other consumers); `status` lists live workers.",
    no_args_is_help=False,
    invoke_without_command=True,
)


async def _serve(
    concurrency: int | None, batch_size: int | None, consumers: list[str] | None, name: str | None
) -> None:
    daemon()
    async with open_app() as a:
        render.notice(
            f"worker on {', '.join(consumers or worker.CONSUMERS)}; concurrency"
            f" {concurrency or a.settings.worker_concurrency}, batch"
            f" {batch_size or a.settings.worker_batch_size} (SIGTERM/Ctrl-C stops it cleanly)"
        )
        wid = await worker.run_worker(
            a, concurrency=concurrency, batch_size=batch_size, consumers=consumers, name=name
        )
    render.notice(f"worker {wid} stopped")


def _serve_blocking(*args: Any) -> None:
    runtime.run(_serve(*args))  # uvloop, and the collector set for a daemon


@app.callback()
def run(
    ctx: typer.Context,
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", min=1, help="Sends at once (env: JULIA_WORKER_CONCURRENCY)."),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            min=1,
            help="Messages claimed per round trip (env: JULIA_WORKER_BATCH_SIZE).",
        ),
    ] = None,
    consumer: Annotated[
        list[str] | None,
        typer.Option("--consumer", help="Run only this consumer (repeatable; default: all)."),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Worker id (default: host-pid-random).")
    ] = None,
) -> None:
    """Run the worker until SIGTERM/SIGINT: in-flight sends finish, the rest is released."""
    if ctx.invoked_subcommand is not None:
        return
    _run(_serve_blocking, concurrency, batch_size, consumer, name)


@app.command("status")
async def status(
    all_: Annotated[bool, typer.Option("--all", help="Include stopped workers.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Workers and their last heartbeat (alive, dead, or stopped)."""
    async with open_app() as a:
        rows = await heartbeat.workers_status(a, include_stopped=all_)
    if json_:
        render.print_json([w.as_dict() for w in rows])
        return
    render.table(
        (w.as_dict() for w in rows),
        ["id", "state", "last_beat_at", "age_s", "redis_beat", "consumers", "processed", "failed"],
        title=f"{sum(w.state == 'alive' for w in rows)} live worker(s)",
    )
