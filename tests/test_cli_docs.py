"""docs/cli.md is generated from the commands' own help and never drifts from them.

When this fails after a command or option changed: ``python -m julia_cli.docs --write``.
"""

from __future__ import annotations

import typer

from julia_cli import docs
from julia_cli.main import app


def test_docs_cli_md_is_current() -> None:
    assert docs.DOC.read_text(encoding="utf-8") == docs.render(), (
        "docs/cli.md is stale: run `python -m julia_cli.docs --write` and commit it"
    )


def _leaves(cmd: object, path: list[str]) -> list[str]:
    subs = getattr(cmd, "commands", None)
    if not subs:
        return [" ".join(path)]
    return [leaf for name, sub in subs.items() for leaf in _leaves(sub, [*path, name])]


def test_every_command_and_option_is_in_the_reference() -> None:
    text = docs.render()
    root = typer.main.get_command(app)
    for leaf in _leaves(root, ["julia"]):
        assert f"## `{leaf}`" in text, leaf
    enqueue = text.split("## `julia fila enqueue`")[1].split("\n## ")[0]
    assert "`--agendar-para`" in enqueue and "`JULIA_OPERATOR`" in enqueue
    assert "`-v` / `--verbose`" in text  # the root's new option


def test_check_mode_reports_a_stale_file(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    stale = tmp_path / "cli.md"
    stale.write_text("old\n")
    monkeypatch.setattr(docs, "DOC", stale)
    assert docs.main(["--check"]) == 1
    assert docs.main(["--write"]) == 0 and docs.main(["--check"]) == 0
