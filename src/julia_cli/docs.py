"""The command reference, generated from the commands' own help: ``docs/cli.md``.

``python -m julia_cli.docs`` prints it; ``--write`` rewrites ``docs/cli.md``;
``--check`` exits 1 when the file differs (``tests/test_cli_docs.py`` does the same),
so the reference never drifts from the code. A command added later is picked up.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from julia_cli.main import app

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"

HEADER = """# Command reference

Generated from the commands' own help by `python -m julia_cli.docs --write`; a test
fails when this file and the code disagree. Every command answers on stdout and
reports errors as one line on stderr (exit codes in [runbook.md](runbook.md));
`-v`/`--verbose` and `--debug` are accepted anywhere on the line.
"""


def _clean(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").strip().splitlines()]
    return " ".join(line for line in lines if line).replace("|", "\\\\|")


def _default(param: Any) -> str:
    if getattr(param, "count", False):
        return ""
    default = param.default
    if callable(default) or default is None or default == () or default == []:
        return ""
    if getattr(param, "is_flag", False):
        if default is False:
            return ""
        return "on" if default is True else str(default)
    return f"`{default}`"


def _names(param: Any) -> str:
    if param.param_type_name == "argument":
        return f"`{(param.metavar or param.name).upper().rstrip('_')}`"
    names = [*param.opts, *param.secondary_opts]
    return " / ".join(f"`{n}`" for n in names)


def _param_rows(cmd: Any) -> list[str]:
    ctx = typer.Context(cmd)
    rows = []
    for p in cmd.params:
        if getattr(p, "hidden", False) or p.name == "help":
            continue
        flag = getattr(p, "is_flag", False) or getattr(p, "count", False)
        kind = "flag" if flag else p.display_type(ctx).strip("<>")
        if getattr(p, "multiple", False):
            kind += ", repeatable"
        env = p.envvar if isinstance(p.envvar, str) else ", ".join(p.envvar or ())
        rows.append(
            f"| {_names(p)} | {kind} | {'yes' if p.required else ''} | {_default(p)} |"
            f" {f'`{env}`' if env else ''} | {_clean(getattr(p, 'help', None))} |"
        )
    return rows


def _walk(cmd: Any, path: list[str], out: list[str]) -> None:
    subcommands = getattr(cmd, "commands", None)
    if path:
        out.append(f"\n## `{' '.join(path)}`\n")
        helptext = _clean(cmd.help)
        if helptext:
            out.append(helptext + "\n")
        rows = _param_rows(cmd)
        if rows:
            out.append("| option | type | required | default | env | help |")
            out.append("|---|---|---|---|---|---|")
            out.extend(rows)
    elif subcommands is not None:
        rows = _param_rows(cmd)
        out.append("\n## `julia` (root options)\n")
        out.append("| option | type | required | default | env | help |")
        out.append("|---|---|---|---|---|---|")
        out.extend(rows)
    if subcommands:
        for name in sorted(subcommands):
            _walk(subcommands[name], [*path, name] if path else ["julia", name], out)


def render() -> str:
    root = typer.main.get_command(app)
    body: list[str] = []
    _walk(root, [], body)
    commands = [line[5:-2] for line in body if line.startswith("\n## `julia ")]
    index = "\n".join(f"- [`{c}`](#{c.replace(' ', '-')})" for c in commands)
    return HEADER + "\n" + index + "\n" + "\n".join(body) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = render()
    if "--write" in args:
        DOC.write_text(text, encoding="utf-8")
        print(f"wrote {DOC}", file=sys.stderr)
        return 0
    if "--check" in args:
        if not DOC.exists() or DOC.read_text(encoding="utf-8") != text:
            print(f"{DOC} is stale: run python -m julia_cli.docs --write", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
