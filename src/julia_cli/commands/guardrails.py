"""``julia guardrails``: what protects a doctor right now; manual blocks; the contact cap."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from julia.core import audit
from julia.guardrails import blocks, rules
from julia_cli import render
from julia_cli.base import JsonOpt, JuliaTyper, OperadorOpt, open_app

app = JuliaTyper(name="guardrails", help="Guardrails: who may be contacted now, and why not.")

TelefoneOpt = Annotated[str, typer.Option("--telefone", help="The doctor's phone.")]
MotivoOpt = Annotated[str, typer.Option("--motivo", help="Why (recorded with your name).")]


@app.command("check")
async def check(
    telefone: TelefoneOpt,
    tipo: Annotated[str, typer.Option("--tipo", help="Message type to judge.")] = "campanha",
    json_: JsonOpt = False,
) -> None:
    """Explain every rule that applies to a doctor right now."""
    async with open_app() as a:
        v = await rules.check(a, telefone, tipo)
    data = v.as_dict() | {"telefone": render.mask(v.telefone)}
    if json_:
        render.print_json(data)
        return
    verdict = "may be contacted now" if v.now else (
        "must wait: " + ", ".join(v.reasons) if v.allowed else "blocked: " + ", ".join(v.reasons)
    )  # fmt: skip
    render.message(f"{render.mask(v.telefone)} ({v.tipo}): {verdict}")
    render.table(
        ({"regra": c.regra, "aplica": c.aplica, "bloqueia": c.bloqueia,
          "detalhe": escape(c.detalhe)} for c in v.checks),
        ["regra", "aplica", "bloqueia", "detalhe"],
    )  # fmt: skip


@app.command("block")
async def block(telefone: TelefoneOpt, motivo: MotivoOpt, operador: OperadorOpt = None) -> None:
    """Block a doctor by hand: nothing is sent to them until unblocked."""
    async with open_app() as a:
        r = await blocks.block(a, telefone, motivo=motivo, actor=audit.Actor.of(a, operador))
    render.message(
        f"blocked: {render.mask(r['telefone'])}" + ("" if r["created"] else " (already)")
    )


@app.command("unblock")
async def unblock(telefone: TelefoneOpt, motivo: MotivoOpt, operador: OperadorOpt = None) -> None:
    """Lift a doctor's manual block."""
    async with open_app() as a:
        r = await blocks.unblock(a, telefone, motivo=motivo, actor=audit.Actor.of(a, operador))
    render.message(f"unblocked: {render.mask(r['telefone'])}")


@app.command("contact-cap")
async def contact_cap(
    state: Annotated[str, typer.Argument(help="on or off.")],
    motivo: MotivoOpt,
    operador: OperadorOpt = None,
) -> None:
    """Turn the 7-day contact cap on or off for everyone (off is recorded as a bypass)."""
    if state not in ("on", "off"):
        render.message("error: say on or off")
        raise typer.Exit(2)
    async with open_app() as a:
        await rules.set_contact_cap(a, state == "on", motivo=motivo,
                                    actor=audit.Actor.of(a, operador))  # fmt: skip
    render.message(f"contact cap {state}")


@app.command("bypasses")
async def bypasses(
    limit: Annotated[int, typer.Option(help="At most this many rows.", min=1)] = 50,
    json_: JsonOpt = False,
) -> None:
    """Every time a rule was knowingly skipped: who, when, which rule, whom, why."""
    async with open_app() as a:
        rows = await rules.bypasses(a, limit)
    if json_:
        render.print_json(rows)
        return
    render.table(
        ({**r, "motivo": escape(r["motivo"])} for r in rows),
        ["at", "regra", "medico_id", "campanha_id", "operador", "motivo"],
        title=f"{len(rows)} bypasses",
    )
