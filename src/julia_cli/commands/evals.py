"""``julia eval``: scripted conversations (``evals/*.yaml``) scored against the model."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from julia.agent import evals
from julia.core.app import App
from julia_cli import render
from julia_cli.base import JsonOpt, settings


async def eval_(
    suite: Annotated[str | None, typer.Argument(help="One suite (file stem in evals/).")] = None,
    json_: JsonOpt = False,
) -> None:
    """Run the eval conversations in a scratch database; the last line is one JSON object
    (total, passed, failed); exits 1 when any conversation fails."""
    cases = evals.load(suite)
    async with evals.scratch(settings()) as scratch, App.open(scratch) as app:
        results = await evals.run(app, cases)
    totals = evals.totals(results)
    if json_:
        rows = [{"suite": r.suite, "nome": r.nome, "passed": r.passed, "failures": r.failures,
                 "turns": r.turns} for r in results]  # fmt: skip
        typer.echo(json.dumps({**totals, "results": rows}, ensure_ascii=False, default=str))
    else:
        table = Table(title=f"eval {suite or 'all'}", header_style="bold")
        for col in ("suite", "conversa", "ok", "falhas"):
            table.add_column(col)
        for r in results:
            table.add_row(Text(r.suite), Text(r.nome), "yes" if r.passed else Text("NO", "red"),
                          Text("; ".join(r.failures)[:300]))  # fmt: skip
        render.console.print(table)
        typer.echo(json.dumps(totals))
    if totals["failed"]:
        raise typer.Exit(1)
