"""``julia chips``: the pool of WhatsApp numbers — list, add, promote, demote, cooldown,
ban, sync, trust."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import typer

from julia.chips import health, lifecycle, pool, scoring
from julia.core import audit
from julia_cli import render
from julia_cli.base import JsonOpt, JuliaTyper, OperadorOpt, open_app

app = JuliaTyper(name="chips", help="The chip pool: WhatsApp numbers, trust, health.")

IdArg = Annotated[int, typer.Argument(help="The chip's id (see julia chips list).")]
MotivoOpt = Annotated[str, typer.Option("--motivo", help="Why (recorded in the audit log).")]

LIST_COLUMNS = [
    "id", "telefone", "instance", "provider", "status", "trust", "connected", "cooldown",
    "circuit", "sent_24h", "errors_24h",
]  # fmt: skip


def _row(c: pool.Chip) -> dict[str, Any]:
    return c.as_dict() | {
        "telefone": render.mask(c.telefone),
        "trust": f"{c.trust_score} {c.trust_level}"
        + (" (manual)" if c.trust_source == "manual" else ""),
        "cooldown": c.cooldown_until,
    }


def _json(c: pool.Chip) -> dict[str, Any]:
    """A chip for ``--json``: its number masked too (it is not a doctor's own record)."""
    return c.as_dict() | {"telefone": render.mask(c.telefone)}


def _render_chip(c: pool.Chip, json_: bool, verb: str) -> None:
    if json_:
        render.print_json(_json(c))
    else:
        render.message(
            f"chip {c.id} ({c.instance}, {render.mask(c.telefone)}) {verb}: {c.status},"
            f" trust {c.trust_score} {c.trust_level}"
        )


def _render_action(result: lifecycle.ActionResult, json_: bool) -> None:
    if json_:
        render.print_json(result.as_dict() | {"chip": _json(result.chip)})
        return
    _render_chip(result.chip, False, result.action)
    if result.migrated:
        placed = sum(1 for m in result.migrated if m["to_chip"] is not None)
        render.message(f"  {len(result.migrated)} conversations migrated ({placed} placed)")


@app.command("list")
async def list_(
    status: Annotated[str | None, typer.Option(help="Only chips in this status.")] = None,
    json_: JsonOpt = False,
) -> None:
    """List the chips: number (masked), status, trust, connection, cooldown, circuit, 24 h."""
    async with open_app() as a:
        chips = await pool.list_chips(a, status=status)
    if json_:
        render.print_json([_json(c) for c in chips])
        return
    render.table((_row(c) for c in chips), LIST_COLUMNS, title=f"{len(chips)} chips")


@app.command("show")
async def show(chip_id: IdArg, json_: JsonOpt = False) -> None:
    """One chip: details, limits now, last transitions and events."""
    async with open_app() as a:
        info = await pool.describe(a, chip_id)
    if json_:
        render.print_json(
            info | {"chip": info["chip"] | {"telefone": render.mask(info["chip"]["telefone"])}}
        )
        return
    c = info["chip"]
    render.table(
        [{"field": k, "value": v} for k, v in c.items() if k not in ("trust_factors", "telefone")]
        + [{"field": "telefone", "value": render.mask(c["telefone"])},
           {"field": "limits", "value": info["limits"]["why"] + f" → {info['limits']['hourly']}/h,"
                                        f" {info['limits']['daily']}/day"},
           {"field": "conversas_ativas", "value": info["conversas_ativas"]}],
        ["field", "value"],
        title=f"chip {c['id']}",
    )  # fmt: skip
    render.table(info["transitions"], ["at", "de", "para", "motivo", "ator"], title="transitions")


@app.command("add")
async def add(
    instance: Annotated[str, typer.Option("--instance", help="The gateway instance name.")],
    telefone: Annotated[str, typer.Option("--telefone", help="The chip's phone number.")],
    provider: Annotated[str, typer.Option("--provider", help="evolution or zapi.")] = "evolution",
    trust: Annotated[
        int | None, typer.Option("--trust", help="Seed the trust score (tests and demos).")
    ] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="Seed the status (default provisioned).")
    ] = None,
    zapi_token: Annotated[
        str | None,
        typer.Option(
            "--zapi-token",
            envvar="JULIA_CHIP_ZAPI_TOKEN",
            show_default=False,
            help="A Z-API chip's own instance token (better from the env var).",
        ),
    ] = None,
    zapi_client_token: Annotated[
        str | None,
        typer.Option(
            "--zapi-client-token",
            envvar="JULIA_CHIP_ZAPI_CLIENT_TOKEN",
            show_default=False,
            help="Its Client-Token, when the account has one.",
        ),
    ] = None,
    json_: JsonOpt = False,
    operador: OperadorOpt = None,
) -> None:
    """Register a chip (a WhatsApp number hosted as a gateway instance). A Z-API chip's
    ``--instance`` is its Z-API instance id; its tokens are stored apart and never shown."""
    async with open_app() as a:
        chip = await pool.add(
            a, instance=instance, telefone=telefone, provider=provider, trust_score=trust,
            status=status, actor=audit.Actor.of(a, operador), zapi_token=zapi_token,
            zapi_client_token=zapi_client_token,
        )  # fmt: skip
    _render_chip(chip, json_, "added")


@app.command("promote")
async def promote(
    chip_id: IdArg,
    motivo: Annotated[str, typer.Option("--motivo", help="Why.")] = "promoted by operator",
    json_: JsonOpt = False,
    operador: OperadorOpt = None,
) -> None:
    """One step up: provisioned → pending → warming → ready → active; degraded → active."""
    async with open_app() as a:
        result = await lifecycle.promote(
            a, chip_id, motivo=motivo, actor=audit.Actor.of(a, operador)
        )
    _render_action(result, json_)


Action = Callable[..., Awaitable[lifecycle.ActionResult]]


def _action_command(name: str, action: Action, doc: str) -> None:
    """Register ``julia chips NAME CHIP_ID --motivo ...``: one lifecycle step, audited."""

    async def command(
        chip_id: IdArg, motivo: MotivoOpt, json_: JsonOpt = False, operador: OperadorOpt = None
    ) -> None:
        async with open_app() as a:
            result = await action(a, chip_id, motivo=motivo, actor=audit.Actor.of(a, operador))
        _render_action(result, json_)

    command.__doc__ = doc
    command.__name__ = name
    app.command(name)(command)


_action_command(
    "demote", lifecycle.demote,
    "Take a chip out of production (→ degraded); its conversations move to other chips.",
)  # fmt: skip


@app.command("cooldown")
async def cooldown(
    chip_id: IdArg,
    minutos: Annotated[float, typer.Option("--minutos", help="How long (0 ends it).", min=0)],
    motivo: MotivoOpt,
    json_: JsonOpt = False,
    operador: OperadorOpt = None,
) -> None:
    """Keep a chip out of selection for a while (it keeps its status)."""
    async with open_app() as a:
        chip = await lifecycle.cooldown(
            a, chip_id, minutos=minutos, motivo=motivo, actor=audit.Actor.of(a, operador)
        )
    ends = chip.cooldown_until
    _render_chip(
        chip, json_, f"in cooldown until {render.fmt(ends)}" if ends else "out of cooldown"
    )


_action_command(
    "ban", lifecycle.ban,
    "The number was banned by WhatsApp (final): conversations move, trust recomputed.",
)  # fmt: skip
_action_command(
    "retire", lifecycle.retire,
    "Take a chip out of the pool for good (final); conversations move.",
)  # fmt: skip


@app.command("sync")
async def sync(json_: JsonOpt = False) -> None:
    """Ask the gateways for every chip's connection state now."""
    async with open_app() as a:
        report = await health.sync(a)
    if json_:
        render.print_json(report.as_dict())
        return
    render.message(
        f"{report.checked} chips checked: {report.connected} connected,"
        f" {len(report.disconnected)} disconnected" + (" (alert raised)" if report.alerted else "")
    )
    for ch in report.changed:
        render.message(f"  chip {ch['chip_id']} ({ch['instance']}): {ch['state']}")


@app.command("trust")
async def trust_(
    chip_id: Annotated[int | None, typer.Argument(help="One chip (default: all).")] = None,
    recalc: Annotated[
        bool, typer.Option("--recalc", help="Recompute and store the score.")
    ] = False,
    json_: JsonOpt = False,
    operador: OperadorOpt = None,
) -> None:
    """Explain trust scores factor by factor (``--recalc`` stores the new score)."""
    async with open_app() as a:
        results = await scoring.trust_report(
            a, chip_id, recalc=recalc, actor=audit.Actor.of(a, operador)
        )
    if json_:
        render.print_json([r.as_dict() for r in results])
        return
    for r in results:
        render.table(
            [f.as_dict() for f in r.score.factors],
            ["name", "value", "weight", "points", "why"],
            title=f"chip {r.chip_id} ({r.instance}): {r.after} {r.level}"
            + (f" (was {r.before} {r.level_before})" if recalc else f" (stored {r.before})"),
        )
