"""``julia medicos``: import, list, opt-out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from julia.core import audit
from julia.domain import medicos
from julia.guardrails import blocks, lgpd
from julia_cli import render
from julia_cli.base import JsonOpt, JuliaTyper, OperadorOpt, open_app
from julia_cli.commands._progress import progress_bar

app = JuliaTyper(
    name="medicos", help="Doctors: import, list, opt-out, consent, LGPD export and erasure."
)

PathArg = Annotated[Path, typer.Argument(help="CSV file with a header row.")]
SkipOpt = Annotated[
    bool, typer.Option("--skip-invalid", help="Import the good rows and report the bad ones.")
]


def render_import(result: dict[str, object], json_: bool) -> None:
    if json_:
        render.print_json(result)
        return
    skipped = result["skipped"]
    assert isinstance(skipped, list)
    render.message(
        f"{result['path']}: {result['inserted']} inserted, {result['updated']} updated,"
        f" {len(skipped)} skipped"
    )
    for e in skipped:
        render.message(f"  line {e['line']}: {e['reason']}")


@app.command("import")
async def import_(
    path: PathArg,
    skip_invalid: SkipOpt = False,
    json_: JsonOpt = False,
    operador: OperadorOpt = None,
) -> None:
    """Import doctors from a CSV.

    Columns: nome, telefone (required), crm, especialidade, uf, cidade, tags (a;b), id_externo.
    """
    async with open_app() as a:
        with progress_bar("medicos") as progress:
            result = await medicos.import_medicos(
                a, path, skip_invalid=skip_invalid, actor=audit.Actor.of(a, operador),
                progress=progress,
            )  # fmt: skip
    render_import(result.as_dict(), json_)


@app.command("list")
async def list_(
    limit: Annotated[int, typer.Option(help="At most this many rows.", min=1)] = 100,
    opted_out: Annotated[
        bool | None, typer.Option("--opted-out/--not-opted-out", help="Filter by opt-out.")
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """List doctors."""
    async with open_app() as a:
        rows = await medicos.list_medicos(a, limit=limit, opted_out=opted_out)
    if json_:
        render.print_json([m.as_dict() for m in rows])
        return
    render.table(
        (m.as_dict() | {"telefone": render.mask(m.telefone)} for m in rows),
        ["id", "nome", "telefone", "especialidade", "uf", "cidade", "opted_out"],
        title=f"{len(rows)} médicos",
    )


@app.command("optout")
async def optout(
    telefone: Annotated[str, typer.Argument(help="The doctor's phone, in any common writing.")],
    motivo: Annotated[str, typer.Option("--motivo", help="Why (recorded in the audit log).")],
    json_: JsonOpt = False,
    operador: OperadorOpt = None,
) -> None:
    """Record that a doctor asked not to be contacted again."""
    async with open_app() as a:
        m = await medicos.optout(a, telefone, motivo=motivo, actor=audit.Actor.of(a, operador))
    if json_:
        render.print_json(m.as_dict())
    else:
        render.message(f"opted out: {m.nome} ({render.mask(m.telefone)})")


@app.command("optin")
async def optin(
    telefone: Annotated[str, typer.Argument(help="The doctor's phone.")],
    motivo: Annotated[str, typer.Option("--motivo", help="Why (e.g. the doctor asked again).")],
    operador: OperadorOpt = None,
) -> None:
    """Record a renewed consent, undoing an opt-out made by mistake (an operator only)."""
    async with open_app() as a:
        r = await blocks.optin(a, telefone, motivo=motivo, actor=audit.Actor.of(a, operador))
    render.message(f"opted in again: {render.mask(r['telefone'])}")


@app.command("exportar")
async def exportar(
    telefone: Annotated[str, typer.Argument(help="The doctor's phone.")],
    operador: OperadorOpt = None,
) -> None:
    """Print everything Júlia holds about a doctor, as JSON (LGPD access request)."""
    async with open_app() as a:
        data = await lgpd.exportar(a, telefone, actor=audit.Actor.of(a, operador))
    render.print_json(data)


@app.command("esquecer")
async def esquecer(
    telefone: Annotated[str, typer.Argument(help="The doctor's phone.")],
    motivo: Annotated[str, typer.Option("--motivo", help="Why (the request, its date).")],
    operador: OperadorOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Erase a doctor's personal data everywhere; keep only a hashed phone (never contacted)."""
    async with open_app() as a:
        r = await lgpd.esquecer(a, telefone, motivo=motivo, actor=audit.Actor.of(a, operador))
    if json_:
        render.print_json(r)
    else:
        render.message(f"forgotten: {sum(r['removed'].values())} rows erased in"
                       f" {len([k for k, v in r['removed'].items() if v])} tables")  # fmt: skip
