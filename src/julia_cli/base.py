"""The Typer wiring every command shares: async commands, the App, errors → exit codes.

A command parses its options, calls one library function and renders the result.
``JuliaTyper.command`` runs ``async def`` commands under ``asyncio.run`` and turns
every :class:`julia.core.errors.JuliaError` into one red line on stderr and the
class's exit code; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import psycopg
import pydantic
import typer

from julia.core import logs
from julia.core.app import App
from julia.core.errors import ConfigError, JuliaError, StorageError
from julia.settings import Settings
from julia_cli.render import err_console

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class CliState:
    debug: bool = False
    settings: Settings | None = None


state = CliState()

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
OperadorOpt = Annotated[
    str | None,
    typer.Option("--operador", help="Who is acting, for the audit log.", envvar="JULIA_OPERATOR"),
]


def settings() -> Settings:
    """The process's settings, read once; an invalid value is a ConfigError."""
    if state.settings is None:
        try:
            state.settings = Settings()
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"JULIA_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
                for e in exc.errors()
            )
            raise ConfigError(f"invalid settings: {problems}") from None
        logs.configure(state.settings.log_level, state.settings.log_format)
    return state.settings


@asynccontextmanager
async def open_app() -> AsyncIterator[App]:
    logs.new_trace_id()
    async with App.open(settings()) as app:
        yield app


def fail(exc: JuliaError) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {exc}", markup=True, highlight=False, soft_wrap=True)
    return typer.Exit(exc.exit_code)


def _run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        if inspect.iscoroutinefunction(fn):
            return asyncio.run(fn(*args, **kwargs))
        return fn(*args, **kwargs)
    except (typer.Exit, typer.Abort):
        raise
    except JuliaError as exc:
        if state.debug:
            raise
        raise fail(exc) from None
    except (psycopg.OperationalError, OSError) as exc:
        if state.debug:
            raise
        raise fail(StorageError(f"storage unavailable: {exc}")) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except Exception as exc:
        if state.debug or os.environ.get("JULIA_CLI_RAISE"):
            raise
        err_console.print(
            f"[red]unexpected error:[/red] {type(exc).__name__}: {exc} (run with --debug for the"
            " traceback)",
            highlight=False,
        )
        raise typer.Exit(1) from None


class JuliaTyper(typer.Typer):
    """Typer with async commands, error mapping and ``no_args_is_help`` by default."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("no_args_is_help", True)
        kwargs.setdefault("rich_markup_mode", "rich")
        kwargs.setdefault("pretty_exceptions_enable", False)
        super().__init__(**kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Callable[[F], F]:  # type: ignore[override]
        register = super().command(*args, **kwargs)

        def decorator(fn: F) -> F:
            @functools.wraps(fn)
            def wrapper(*a: Any, **kw: Any) -> Any:
                return _run(fn, *a, **kw)

            register(wrapper)
            return fn

        return decorator
