"""The Typer wiring every command shares: async commands, the App, errors → exit codes.

A command parses its options, calls one library function and renders the result.
``JuliaTyper.command`` runs ``async def`` commands under ``asyncio.run`` and turns
every :class:`julia.core.errors.JuliaError` into one red line on stderr and the
class's exit code; ``--debug`` (anywhere on the line) also prints the traceback,
with the same exit code. Usage errors are one line and a hint, not a panel.
Interactive commands log warnings and errors only (``-v`` for info, ``-vv`` for
debug, or ``JULIA_LOG_LEVEL``); the daemons call :func:`daemon` and log as set.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import sys
import traceback
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import psycopg
import pydantic
import typer
from rich.markup import escape
from typer._click import exceptions as click_errors  # typer vendors click (0.29+)
from typer._click.core import Context
from typer.core import TyperGroup

from julia.core import logs
from julia.core.app import App
from julia.core.errors import ConfigError, JuliaError, StorageError
from julia.settings import Settings
from julia_cli import render
from julia_cli.render import err_console

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class CliState:
    debug: bool = False
    verbose: int = 0
    daemon: bool = False
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
        render.set_timezone(state.settings.timezone)
        _configure_logs()
    return state.settings


def log_level() -> str:
    """Daemons and ``JULIA_LOG_LEVEL`` log as set; an interactive command warns only,
    unless ``-v`` (info) or ``-vv`` (debug)."""
    assert state.settings is not None
    if state.daemon or "JULIA_LOG_LEVEL" in os.environ:
        level = state.settings.log_level
    else:
        level = "WARNING"
    if state.verbose:
        level = "DEBUG" if state.verbose > 1 else min(level, "INFO", key=_rank)
    return level


def _rank(level: str) -> int:
    value = logging.getLevelName(level.upper())
    return value if isinstance(value, int) else logging.INFO


def _configure_logs() -> None:
    assert state.settings is not None
    logs.configure(log_level(), state.settings.log_format)


def daemon() -> Settings:
    """Mark this invocation as a daemon (worker, scheduler, shim): it logs as configured."""
    state.daemon = True
    s = settings()
    _configure_logs()
    return s


@asynccontextmanager
async def open_app() -> AsyncIterator[App]:
    logs.new_trace_id()
    async with App.open(settings()) as app:
        yield app


def fail(exc: JuliaError) -> typer.Exit:
    err_console.print(
        f"[red]error:[/red] {escape(str(exc))}", markup=True, highlight=False, soft_wrap=True
    )
    return typer.Exit(exc.exit_code)


def _debug_traceback() -> None:
    if state.debug:
        traceback.print_exc(file=sys.stderr)


def _run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        if inspect.iscoroutinefunction(fn):
            return asyncio.run(fn(*args, **kwargs))
        return fn(*args, **kwargs)
    except (typer.Exit, typer.Abort):
        raise
    except JuliaError as exc:
        _debug_traceback()
        raise fail(exc) from None
    except (psycopg.OperationalError, OSError) as exc:
        _debug_traceback()
        raise fail(StorageError(f"storage unavailable: {exc}")) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except Exception as exc:
        if os.environ.get("JULIA_CLI_RAISE"):
            raise
        _debug_traceback()
        err_console.print(
            f"[red]unexpected error:[/red] {escape(f'{type(exc).__name__}: {exc}')}"
            + ("" if state.debug else " (run with --debug for the traceback)"),
            highlight=False,
        )
        raise typer.Exit(1) from None


class JuliaGroup(TyperGroup):
    """The root group: ``--debug`` and ``-v`` anywhere on the line; one-line usage errors."""

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        head, sep, tail = _split_at_dashdash(args)
        moved = [a for a in head if a in _ANYWHERE]
        head = [a for a in head if a not in _ANYWHERE]
        return super().parse_args(ctx, [*moved, *head, *sep, *tail])

    def main(  # type: ignore[override]
        self, args: Any = None, prog_name: Any = None, complete_var: Any = None,
        standalone_mode: bool = True, **extra: Any,
    ) -> Any:  # fmt: skip
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click_errors.NoArgsIsHelpError as exc:
            sys.stdout.write(exc.ctx.get_help() + "\n" if exc.ctx else "")
            sys.exit(exc.exit_code)
        except click_errors.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx else "julia"
            err_console.print(
                f"[red]error:[/red] {escape(exc.format_message())} (see {escape(where)} -h)",
                highlight=False, soft_wrap=True,
            )  # fmt: skip
            sys.exit(exc.exit_code)
        except click_errors.ClickException as exc:
            err_console.print(f"[red]error:[/red] {escape(exc.format_message())}", highlight=False)
            sys.exit(exc.exit_code)
        except typer.Abort:
            err_console.print("aborted", highlight=False)
            sys.exit(1)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


#: Root options accepted after the subcommand too (flags without a value).
_ANYWHERE = frozenset({"--debug", "-v", "-vv", "--verbose"})


def _split_at_dashdash(args: list[str]) -> tuple[list[str], list[str], list[str]]:
    if "--" in args:
        i = args.index("--")
        return args[:i], ["--"], args[i + 1 :]
    return list(args), [], []


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
