"""``julia conversas``: doctors' threads, with the agent's tool calls and guardrails."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from julia.agent import conversas
from julia_cli import render
from julia_cli.base import JsonOpt, JuliaTyper, open_app

app = JuliaTyper(name="conversas", help="Conversations: list, and one doctor's thread.")


@app.command("list")
async def list_(
    status: Annotated[
        str | None, typer.Option(help="ativa, encerrada, revisar (flagged) or humano.")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.", min=1)] = 50,
    json_: JsonOpt = False,
) -> None:
    """Conversations, most recent first."""
    async with open_app() as a:
        rows = await conversas.list_conversas(a, status=status, limit=limit)
    if json_:
        render.print_json(rows)
        return
    shown = [{**r, "telefone": render.mask(r["telefone"]), "nome": Text(r["nome"])} for r in rows]
    render.table(shown, ["id", "telefone", "nome", "status", "controlled_by", "revisar",
                         "turnos", "last_message_at"], title=f"{len(rows)} conversas")  # fmt: skip


@app.command("show")
async def show(
    telefone: Annotated[str, typer.Argument(help="The doctor's phone number.")],
    limit: Annotated[int, typer.Option(help="Latest messages and turns shown.", min=1)] = 50,
    json_: JsonOpt = False,
) -> None:
    """One doctor's thread: messages, then each turn's tools, guardrails and fallbacks."""
    async with open_app() as a:
        data = await conversas.show(a, telefone, limit=limit)
    if json_:
        render.print_json(data)
        return
    head = (f"conversa {data['id']} · {render.mask(data['telefone'])} · {data['status']}"
            f" · {data['controlled_by']}{' · revisar' if data['revisar'] else ''}")  # fmt: skip
    render.console.print(Text(head, style="bold"))
    for m in data["mensagens"]:
        who = "médico" if m["direcao"] == "entrada" else "júlia "
        render.console.print(Text(f"{render.fmt(m['created_at'])} {who} │ {m['conteudo']}"))
    for t in data["turnos"]:
        tools = ", ".join(f"{c['name']}{'!' if c['is_error'] else ''}" for c in t["tool_calls"])
        line = (f"turno {t['id']} {t['status']} tools=[{tools}] guardrails={t['guardrails']}"
                f" motivo={t['motivo'] or '-'} {t['duracao_ms']} ms")  # fmt: skip
        render.console.print(Text(line, style="dim"))
