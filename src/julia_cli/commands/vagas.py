"""``julia vagas``: import and list open shifts."""

from __future__ import annotations

from typing import Annotated

import typer

from julia.core import audit, phones
from julia.core.errors import InvalidInput
from julia.domain import medicos as medicos_lib
from julia.domain import vagas
from julia_cli import render
from julia_cli.base import JsonOpt, JuliaTyper, OperadorOpt, open_app
from julia_cli.commands._progress import progress_bar
from julia_cli.commands.medicos import PathArg, SkipOpt, render_import

app = JuliaTyper(name="vagas", help="Open shifts: import, list, reserve, confirm, cancel.")


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


VagaArg = Annotated[int, typer.Argument(help="The vaga id (julia vagas list).")]
MotivoOpt = Annotated[str, typer.Option("--motivo", help="Why (for the audit log).")]


async def _move(vaga_id: int, acao: str, motivo: str, operador: str | None,
                telefone: str | None = None, json_: bool = False) -> None:  # fmt: skip
    if not motivo.strip():
        raise InvalidInput("--motivo must say why")
    async with open_app() as a:
        medico_id = None
        if telefone is not None:
            medico_id = (await medicos_lib.get_by_phone(a, phones.normalize(telefone))).id
        v = await vagas.move(a, vaga_id, acao, medico_id=medico_id,
                             actor=audit.Actor.of(a, operador), motivo=motivo)  # fmt: skip
    if json_:
        render.print_json(v.as_dict())
    else:
        render.message(f"vaga {v.id}: {v.status}")


@app.command("reservar")
async def reservar(
    vaga_id: VagaArg,
    telefone: Annotated[str, typer.Option("--telefone", help="The doctor it is reserved for.")],
    motivo: MotivoOpt,
    operador: OperadorOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Reserve an open shift for a doctor (audited; the agent's reservation, by hand)."""
    await _move(vaga_id, "reservar", motivo, operador, telefone, json_)


@app.command("confirmar")
async def confirmar(
    vaga_id: VagaArg, motivo: MotivoOpt, operador: OperadorOpt = None, json_: JsonOpt = False
) -> None:
    """Confirm a reserved shift (the hospital accepted the doctor)."""
    await _move(vaga_id, "confirmar", motivo, operador, json_=json_)


@app.command("cancelar")
async def cancelar(
    vaga_id: VagaArg, motivo: MotivoOpt, operador: OperadorOpt = None, json_: JsonOpt = False
) -> None:
    """Cancel a reservation (the shift opens again) or an open shift (cancelada)."""
    await _move(vaga_id, "cancelar", motivo, operador, json_=json_)
