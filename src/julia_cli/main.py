"""The ``julia`` entry point: root options and the sub-apps, one per noun."""

from __future__ import annotations

from typing import Annotated

import typer

from julia import __version__
from julia_cli.base import JuliaGroup, JuliaTyper, state
from julia_cli.commands import campanha as campanha_cmd
from julia_cli.commands import chat as chat_cmd
from julia_cli.commands import chips as chips_cmd
from julia_cli.commands import circuits as circuits_cmd
from julia_cli.commands import conversas as conversas_cmd
from julia_cli.commands import demo as demo_cmd
from julia_cli.commands import evals as evals_cmd
from julia_cli.commands import fila as fila_cmd
from julia_cli.commands import guardrails as guardrails_cmd
from julia_cli.commands import handoff as handoff_cmd
from julia_cli.commands import inbox as inbox_cmd
from julia_cli.commands import medicos, system, vagas
from julia_cli.commands import ops as ops_cmd
from julia_cli.commands import ratelimit as ratelimit_cmd
from julia_cli.commands import sandbox as sandbox_cmd
from julia_cli.commands import shim as shim_cmd
from julia_cli.commands import worker as worker_cmd

app = JuliaTyper(
    name="julia",
    help="Júlia: the AI recruiter's operations console.",
    cls=JuliaGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"julia {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks on errors (anywhere on the line).")
    ] = False,
    verbose: Annotated[
        int,
        typer.Option(
            "-v",
            "--verbose",
            count=True,
            help="Show info logs on stderr (-vv: debug). Default: warnings and errors only.",
        ),
    ] = 0,
) -> None:
    """Júlia's operations console."""
    state.debug = debug
    state.verbose = verbose
    state.daemon = False
    state.settings = None  # read afresh for every invocation


app.command("info")(system.info)
app.add_typer(system.config_app)
app.add_typer(system.db_app)
app.add_typer(system.local_app)
app.add_typer(medicos.app)
app.add_typer(vagas.app)
app.add_typer(fila_cmd.app)
app.add_typer(worker_cmd.app)
app.add_typer(sandbox_cmd.app)
app.add_typer(inbox_cmd.app)
app.add_typer(shim_cmd.app)
app.add_typer(chips_cmd.app)
app.add_typer(circuits_cmd.app)
app.add_typer(conversas_cmd.app)
app.add_typer(handoff_cmd.app)
app.command("chat")(chat_cmd.chat)
app.command("eval")(evals_cmd.eval_)
app.add_typer(ratelimit_cmd.app)
app.add_typer(guardrails_cmd.app)
app.add_typer(campanha_cmd.app)
ops_cmd.register(app)
app.command("demo")(demo_cmd.demo)


def main() -> None:
    app()
