"""A Rich progress bar for long imports, shown only on a terminal and for big files."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from julia.core.importing import Progress as ProgressFn
from julia_cli.render import err_console


@contextmanager
def progress_bar(label: str, enabled: bool = True) -> Iterator[ProgressFn | None]:
    if not enabled or not err_console.is_terminal:
        yield None
        return
    with Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), console=err_console, transient=True
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
