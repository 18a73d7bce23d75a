"""``julia vagas``: import and list open shifts."""

from __future__ import annotations

from typing import Annotated

import typer

from julia.core import audit
from julia.domain import vagas
from julia_cli import render
from julia_cli.base import JsonOpt, JuliaTyper, OperadorOpt, open_app
from julia_cli.commands._progress import progress_bar
from julia_cli.commands.medicos import PathArg, SkipOpt, render_import

app = JuliaTyper(name="vagas", help="Open shifts: import and list.")


@app.command("import")
async def import_(
    path: PathArg,
    skip_invalid: SkipOpt = False,
    json_: JsonOpt = False,
    operador: OperadorOpt = None,
) -> None:
    """Import shifts from a CSV.

    Columns: hospital, especialidade, data, inicio, fim, valor (required), periodo, id_externo.
    """
    async with open_app() as a:
        with progress_bar("vagas") as progress:
            result = await vagas.import_vagas(
                a, path, skip_invalid=skip_invalid, actor=audit.Actor.of(a, operador),
                progress=progress,
            )  # fmt: skip
    render_import(result.as_dict(), json_)


@app.command("list")
async def list_(
    status: Annotated[
        str | None, typer.Option(help="aberta, reservada, confirmada or cancelada.")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.", min=1)] = 100,
    json_: JsonOpt = False,
) -> None:
    """List shifts, soonest first."""
    async with open_app() as a:
        rows = await vagas.list_vagas(a, status=status, limit=limit)
    if json_:
        render.print_json([v.as_dict() for v in rows])
        return
    render.table(
        (v.as_dict() for v in rows),
        ["id", "hospital", "especialidade", "data", "inicio", "fim", "periodo", "valor", "status"],
        title=f"{len(rows)} vagas",
    )
