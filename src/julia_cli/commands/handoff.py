"""``julia handoff``: conversations handed to a person: list, show, take, give back, resolve."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from julia import handoff
from julia.core import audit
from julia.handoff import control
from julia_cli import render
from julia_cli.base import JsonOpt, JuliaTyper, OperadorOpt, open_app

app = JuliaTyper(name="handoff", help="Human handoff: list, show, assumir, devolver, resolver.")

IdArg = Annotated[int, typer.Argument(help="The handoff id.")]
TelefoneArg = Annotated[str, typer.Argument(help="The doctor's phone number.")]


def _safe(row: dict[str, Any]) -> dict[str, Any]:
    """Text from outside (reasons, summaries, notes) is data, never markup."""
    return {k: escape(v) if isinstance(v, str) else v for k, v in row.items()}


_LIST_KEYS = ["id", "telefone", "status", "trigger", "reason", "created_at", "notified_at"]


@app.command("list")
async def list_(
    status: Annotated[
        str | None, typer.Option(help="Only this status: pendente, em_atendimento, resolvido.")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.", min=1)] = 50,
    json_: JsonOpt = False,
) -> None:
    """List handoffs, newest first (phones masked)."""
    async with open_app() as a:
        rows = [
            handoff.public(h) for h in await control.list_handoffs(a, status=status, limit=limit)
        ]
    if json_:
        render.print_json(rows)
        return
    render.table(
        (_safe({**r, "reason": (r["reason"] or "")[:50]}) for r in rows),
        _LIST_KEYS,
        title=f"{len(rows)} handoffs",
    )


@app.command("show")
async def show(handoff_id: IdArg, json_: JsonOpt = False) -> None:
    """One handoff with its control transitions."""
    async with open_app() as a:
        h = await control.get(a, handoff_id)
        moves = [m for m in await control.transitions(a, h.conversa_id) if m["handoff_id"] == h.id]
    data = handoff.public(h) | {"transicoes": moves}
    if json_:
        render.print_json(data)
        return
    for key, value in handoff.public(h).items():
        render.console.print(f"[bold]{key}[/bold]: {escape(render.fmt(value))}", highlight=False)
    render.table(
        [_safe(m) for m in moves],
        ["created_at", "de", "para", "evento", "actor", "reason"],
        title="transições",
    )


@app.command("assumir")
async def assumir(
    telefone: TelefoneArg,
    motivo: Annotated[str, typer.Option("--motivo", help="Why a person takes over (audit log).")],
    json_: JsonOpt = False,
    operador: OperadorOpt = None,
) -> None:
    """Take a doctor's conversation: Júlia stops answering it (Chatwoot and Slack are told)."""
    async with open_app() as a:
        h = await handoff.assumir(a, telefone, motivo=motivo, actor=audit.Actor.of(a, operador))
    if json_:
        render.print_json(handoff.public(h))
    else:
        told = "Chatwoot told" if h.notified_at else "Chatwoot NOT told (see julia alerts)"
        render.message(f"handoff {h.id}: {h.status} ({told})")


@app.command("devolver")
async def devolver(
    telefone: TelefoneArg,
    nota: Annotated[str, typer.Option("--nota", help="What Júlia should know (she reads it).")],
    json_: JsonOpt = False,
    operador: OperadorOpt = None,
) -> None:
    """Give a doctor's conversation back to Júlia, with a note for her next turn."""
    async with open_app() as a:
        h = await handoff.devolver(a, telefone, nota=nota, actor=audit.Actor.of(a, operador))
    if json_:
        render.print_json(handoff.public(h))
    else:
        render.message(f"handoff {h.id}: {h.status}; Júlia has the conversation again")


@app.command("resolver")
async def resolver(
    handoff_id: IdArg,
    nota: Annotated[str, typer.Option("--nota", help="How it ended (Júlia reads it).")],
    json_: JsonOpt = False,
    operador: OperadorOpt = None,
) -> None:
    """Mark a handoff resolved; Júlia has the conversation again."""
    async with open_app() as a:
        h = await handoff.resolver(a, handoff_id, nota=nota, actor=audit.Actor.of(a, operador))
    if json_:
        render.print_json(handoff.public(h))
    else:
        render.message(f"handoff {h.id}: {h.status}")
