"""Every knob has a name and every command says what it does."""

from __future__ import annotations

from typing import Any

import typer.main

from julia.settings import Settings
from julia_cli.main import app


def test_every_setting_has_a_description() -> None:
    missing = [n for n, f in Settings.model_fields.items() if not f.description]
    assert missing == []


def _walk(cmd: Any, path: str = "julia"):  # type: ignore[no-untyped-def]
    # typer 0.29 vendors click: duck-typed, an isinstance on click's classes sees nothing
    yield path, cmd
    if getattr(cmd, "commands", None):
        for name, sub in cmd.commands.items():
            yield from _walk(sub, f"{path} {name}")


def test_every_command_and_option_has_help() -> None:
    problems = []
    for path, cmd in _walk(typer.main.get_command(app)):
        if not (cmd.help or "").strip():
            problems.append(f"{path}: no help")
        for param in cmd.params:
            if param.param_type_name == "option" and not (param.help or "").strip():
                problems.append(f"{path} {param.opts[0]}: no help")
    assert problems == []
    assert sum(1 for _ in _walk(typer.main.get_command(app))) > 40  # the walk sees them all
