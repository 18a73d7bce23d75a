"""``julia inbox``: list, show and replay stored inbound messages."""

from __future__ import annotations

from typing import Annotated

import typer

from julia import inbox
from julia.core import audit
from julia_cli import render
from julia_cli.base import JsonOpt, JuliaTyper, OperadorOpt, open_app

app = JuliaTyper(name="inbox", help="Inbound messages: list, show, replay.")

IdArg = Annotated[int, typer.Argument(help="The inbox message id.")]


@app.command("list")
async def list_(
    status: Annotated[
        str | None,
        typer.Option(help="Only this status: pendente, processada, ignorada, erro."),
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.", min=1)] = 50,
    json_: JsonOpt = False,
) -> None:
    """List stored inbound messages, newest first."""
    async with open_app() as a:
        rows = await inbox.list_inbox(a, status=status, limit=limit)
    if json_:
        render.print_json([r.as_dict() for r in rows])
        return
    render.table(
        (
            r.as_dict() | {"telefone": render.mask(r.telefone), "texto": (r.texto or "")[:40]}
            for r in rows
        ),
        ["id", "provider", "telefone", "tipo", "texto", "status", "attempts", "received_at"],
        title=f"{len(rows)} mensagens",
    )


@app.command("show")
async def show(message_id: IdArg, json_: JsonOpt = False) -> None:
    """Show one inbound message with its raw payload (phones and keys masked)."""
    async with open_app() as a:
        row = await inbox.get(a, message_id, with_payload=True)
    # The payload is masked for display and --json alike (it holds the gateway's apikey
    # and numbers); --json keeps the row's own telefone whole, as every --json does.
    shown = {k: render.mask_payload(v, k) if k == "payload" else v for k, v in row.items()}
    if json_:
        render.print_json(shown)
        return
    shown = {k: render.mask_payload(v, k) for k, v in shown.items()}  # remote_jid, keys...
    shown["telefone"] = render.mask(row.get("telefone"))
    render.message(f"({render.tz_label()})")
    for key, value in shown.items():
        render.field(key, value)


@app.command("replay")
async def replay(
    message_id: IdArg,
    motivo: Annotated[str, typer.Option("--motivo", help="Why (audit log).")] = "replay",
    json_: JsonOpt = False,
    operador: OperadorOpt = None,
) -> None:
    """Put a parked (erro), ignored or processed message back in the queue."""
    async with open_app() as a:
        row = await inbox.replay(a, message_id, actor=audit.Actor.of(a, operador), motivo=motivo)
    if json_:
        render.print_json(row.as_dict())
    else:
        render.message(f"inbox message {row.id} is pendente again")
