"""Every knob has a name and every command says what it does."""

from __future__ import annotations

import click
import typer.main

from julia.settings import Settings
from julia_cli.main import app


def test_every_setting_has_a_description() -> None:
    missing = [n for n, f in Settings.model_fields.items() if not f.description]
    assert missing == []


def _walk(cmd: click.Command, path: str = "julia"):  # type: ignore[no-untyped-def]
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name, sub in cmd.commands.items():
            yield from _walk(sub, f"{path} {name}")


def test_every_command_and_option_has_help() -> None:
    problems = []
    for path, cmd in _walk(typer.main.get_command(app)):
        if not (cmd.help or "").strip():
            problems.append(f"{path}: no help")
        for param in cmd.params:
            if isinstance(param, click.Option) and not (param.help or "").strip():
                problems.append(f"{path} {param.opts[0]}: no help")
    assert problems == []
