"""``julia circuits``: circuit breakers' state, history and operator overrides."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import typer

from julia.core import audit
from julia.resilience import breaker
from julia_cli import render
from julia_cli.base import JsonOpt, JuliaTyper, OperadorOpt, open_app

app = JuliaTyper(name="circuits", help="Circuit breakers: status, history, reset, force open.")

NameArg = Annotated[str, typer.Argument(help="Breaker name: evolution, anthropic, chip:12...")]
MotivoOpt = Annotated[str, typer.Option("--motivo", help="Why (recorded in the audit log).")]


def _render_moves(moves: list[breaker.Transition], name: str, json_: bool) -> None:
    if json_:
        render.print_json({"name": name, "transitions": moves})
    elif moves:
        for m in moves:
            render.message(f"{name}: {m.from_state} → {m.to_state} ({m.reason})")
    else:
        render.message(f"{name}: already in that state; nothing changed")


@app.command("status")
async def status(json_: JsonOpt = False) -> None:
    """Every known breaker: state, where the state lives, failures, when it may close."""
    async with open_app() as a:
        rows = await breaker.status_all(a)
    if json_:
        render.print_json(rows)
        return
    render.table(
        (
            {
                **vars(r),
                "window": f"{r.window_failures}/{r.window_calls}",
                "open_until": r.open_until if r.state == "open" else None,
            }
            for r in rows
        ),
        ["name", "state", "backend", "consecutive_failures", "window", "open_until", "last_error"],
        title="circuit breakers",
    )
    if any(r.backend == "local" for r in rows):
        render.notice("Redis unreachable: states shown are this process's local view only")


@app.command("history")
async def history(
    name: NameArg,
    hours: Annotated[float, typer.Option("--hours", help="How far back.", min=0.01)] = 24.0,
    json_: JsonOpt = False,
) -> None:
    """Transitions of one breaker (from ``circuit_transitions``)."""
    async with open_app() as a:
        rows = await breaker.history(a, name, hours=hours)
    if json_:
        render.print_json(rows)
        return
    render.table(
        (vars(r) for r in rows),
        ["at", "from_state", "to_state", "reason", "consecutive_failures", "error_type",
         "operador"],
        title=f"{name}: {len(rows)} transitions in {hours:g} h",
    )  # fmt: skip


@app.command("reset")
async def reset(
    name: NameArg,
    motivo: Annotated[
        str, typer.Option("--motivo", help="Why (recorded in the audit log).")
    ] = "reset by operator",
    json_: JsonOpt = False,
    operador: OperadorOpt = None,
) -> None:
    """Close a breaker now and forget its failures (also lifts forced open/disabled)."""
    async with open_app() as a:
        moves = await breaker.reset(a, name, motivo, audit.Actor.of(a, operador))
    _render_moves(moves, name, json_)


Override = Callable[..., Awaitable[list[breaker.Transition]]]


def _override_command(command_name: str, override: Override, doc: str) -> None:
    """Register ``julia circuits NAME BREAKER --motivo ...``: an audited operator override."""

    async def command(
        name: NameArg, motivo: MotivoOpt, json_: JsonOpt = False, operador: OperadorOpt = None
    ) -> None:
        async with open_app() as a:
            moves = await override(a, name, motivo, audit.Actor.of(a, operador))
        _render_moves(moves, name, json_)

    command.__doc__ = doc
    command.__name__ = command_name
    app.command(command_name)(command)


_override_command(
    "open", breaker.force_open,
    "Force a breaker open (every call refused) until ``julia circuits reset``.",
)  # fmt: skip
_override_command(
    "disable", breaker.disable,
    "Let every call through, counting nothing, until ``julia circuits reset``.",
)  # fmt: skip
