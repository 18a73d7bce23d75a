"""``julia chat``: talk to Júlia in the terminal as a doctor would (no WhatsApp)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.text import Text

from julia.agent import chat as agent_chat
from julia_cli import render
from julia_cli.base import open_app


async def chat(
    telefone: Annotated[
        str, typer.Option("--telefone", help="Talk as this doctor (created as a lead if new).")
    ] = "+5511900000000",
) -> None:
    """Each line you type is a doctor's message; Júlia's reply, tool calls and guardrail
    decisions are shown. Replies are recorded, never queued. Ctrl-D ends."""
    async with open_app() as a:
        render.message(f"chat as {render.mask(telefone)} (Ctrl-D ends)")
        while True:
            try:
                line = await asyncio.to_thread(input, "médico> ")
            except EOFError:
                break
            if not line.strip():
                continue
            outcome = await agent_chat.say(a, telefone, line)
            for call in outcome.tool_calls:
                mark = "erro" if call["is_error"] else "ok"
                render.console.print(Text(f"  · {call['name']}({call['input']}) → {mark}", "dim"))
            if outcome.guardrails:
                render.console.print(
                    Text(f"  · guardrails: {', '.join(outcome.guardrails)}", "yellow")
                )
            if outcome.status not in ("respondido",):
                render.console.print(Text(f"  · {outcome.status}: {outcome.motivo}", "yellow"))
            render.console.print(Text(f"júlia> {outcome.resposta or '(nada)'}"))
