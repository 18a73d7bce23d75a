"""``julia ratelimit``: usage per doctor or chip, and operator overrides."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from julia.core import audit
from julia.core.errors import InvalidInput
from julia.resilience import ratelimit
from julia_cli import render
from julia_cli.base import JsonOpt, JuliaTyper, OperadorOpt, open_app

app = JuliaTyper(name="ratelimit", help="Outbound rate limits: status and overrides.")


def _when(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"--ate {text!r} is not a date/time like 2026-01-05T18:00") from None


@app.command("override")
async def override(
    telefone: Annotated[str, typer.Option("--telefone", help="The doctor's phone.")],
    motivo: Annotated[str, typer.Option("--motivo", help="Why (recorded in the audit log).")],
    ate: Annotated[
        str | None,
        typer.Option(
            "--ate",
            help="Until when (ISO date/time; no zone = JULIA_TIMEZONE). Default: "
            "JULIA_RATE_LIMIT_OVERRIDE_DEFAULT_H hours from now.",
        ),
    ] = None,
    json_: JsonOpt = False,
    operador: OperadorOpt = None,
) -> None:
    """Lift one doctor's proactive-message limit for a while."""
    until = _when(ate)
    async with open_app() as a:
        ov = await ratelimit.override(a, telefone, motivo, audit.Actor.of(a, operador), until)
    if json_:
        render.print_json(ov.as_dict())
    else:
        render.message(
            f"override for {render.mask(ov.telefone)} until {render.fmt(ov.ate)} by {ov.operador}"
        )


@app.command("status")
async def status(
    telefone: Annotated[str | None, typer.Option("--telefone", help="A doctor's phone.")] = None,
    chip: Annotated[str | None, typer.Option("--chip", help="A chip id.")] = None,
    json_: JsonOpt = False,
) -> None:
    """Usage and what is left, for one doctor (--telefone) or one chip (--chip)."""
    async with open_app() as a:
        st = await ratelimit.status(a, telefone=telefone, chip_id=chip)
    if json_:
        render.print_json(st.as_dict())
        return
    subject = render.mask(st.subject) if telefone else st.subject
    render.table(
        (vars(u) for u in st.usage),
        ["limit", "used", "max", "left", "frees_at"],
        title=f"{subject} (counted in {st.backend})",
    )
    if st.next_proactive_at:
        render.message(f"next proactive message at {render.fmt(st.next_proactive_at)}")
    if st.override:
        render.message(
            f"override until {render.fmt(st.override.ate)} by {st.override.operador}:"
            f" {st.override.motivo}"
        )
