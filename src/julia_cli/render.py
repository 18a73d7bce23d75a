"""Presentation: tables and JSON. Data goes to stdout, messages and errors to stderr."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    return str(value)


def to_jsonable(data: Any) -> Any:
    return json.loads(json.dumps(data, default=_default))


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, default=_default, ensure_ascii=False, indent=2) + "\n")
    sys.stdout.flush()


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def table(
    rows: Iterable[dict[str, Any]], columns: Sequence[str], *, title: str | None = None
) -> None:
    t = Table(title=title, header_style="bold")
    for col in columns:
        t.add_column(col)
    for row in rows:
        t.add_row(*(fmt(row.get(c)) for c in columns))
    console.print(t)


def message(text: str) -> None:
    err_console.print(text, highlight=False)


def mask(phone: str | None) -> str:
    """Tables show masked phones; ``--json`` is for machines and carries the full value."""
    from julia.core.redact import mask_phone

    return mask_phone(phone)
