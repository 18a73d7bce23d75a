"""Presentation: tables, JSON and one-line answers.

Answers (tables, JSON, confirmations) go to stdout; errors, warnings and the
daemons' banners go to stderr. Text from outside (a doctor's message or name, an
option's value) is never read as Rich markup: cells and lines are ``Text``.
Times for people are shown in the business time zone (``JULIA_TIMEZONE``),
labelled once per table; JSON keeps ISO 8601 with the offset.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.table import Table
from rich.text import Text

from julia.core.redact import mask_phone, mask_secret

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


@dataclasses.dataclass
class _Display:
    tz: ZoneInfo = dataclasses.field(default_factory=lambda: ZoneInfo("America/Sao_Paulo"))


display = _Display()


def set_timezone(name: str) -> None:
    """Show people's times in this zone (the CLI sets it from ``JULIA_TIMEZONE``)."""
    try:
        display.tz = ZoneInfo(name)
    except Exception:  # an unknown zone is reported by the settings, not here
        display.tz = ZoneInfo("UTC")


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


def local_time(value: datetime) -> datetime:
    """An aware time in the business zone (a naive one is taken as UTC, as stored)."""
    if value.tzinfo is None:
        from datetime import UTC

        value = value.replace(tzinfo=UTC)
    return value.astimezone(display.tz)


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return local_time(value).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, list | tuple):
        return ", ".join(fmt(v) for v in value)
    if isinstance(value, Mapping):
        return json.dumps(value, default=_default, ensure_ascii=False)
    return str(value)


def tz_label() -> str:
    return f"times in {display.tz.key}"


def _has_time(rows: list[dict[str, Any]]) -> bool:
    return any(isinstance(v, datetime) for r in rows for v in r.values())


def table(
    rows: Iterable[dict[str, Any]], columns: Sequence[str], *, title: str | None = None
) -> None:
    """A table on a terminal (long cells fold, never cut); plain aligned text in a pipe,
    so ``| grep`` finds every value whole."""
    rows = list(rows)
    if _has_time(rows) and "times in" not in (title or ""):
        title = f"{title} ({tz_label()})" if title else tz_label()
    cells = [[fmt(row.get(c)) for c in columns] for row in rows]
    if not console.is_terminal:
        out = sys.stdout
        if title:
            out.write(title + "\n")
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
        for line in [list(columns), *cells]:
            out.write("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
            out.write("\n")
        out.flush()
        return
    t = Table(title=Text(title) if title else None, header_style="bold")
    for col in columns:
        t.add_column(col, overflow="fold")
    for line in cells:
        t.add_row(*(Text(v) for v in line))
    console.print(t)


def field(name: str, value: Any, width: int = 0) -> None:
    """One ``name: value`` line of a record (the value is text, never markup)."""
    line = Text()
    line.append(f"{name:{width}}" if width else f"{name}:", style="bold")
    line.append(" " + fmt(value))
    console.print(line, highlight=False)


def message(text: str) -> None:
    """A command's one-line answer (stdout)."""
    console.print(Text(text), highlight=False)


def notice(text: str) -> None:
    """A banner or warning for the person at the terminal (stderr), not an answer."""
    err_console.print(Text(text), highlight=False)


def mask(phone: str | None) -> str:
    """Tables show masked phones; ``--json`` is for machines and carries the full value."""
    return mask_phone(phone)


_PHONE_KEYS = frozenset({"phone", "telefone", "remotejid", "remote_jid", "number", "numero",
                         "sender", "from", "to", "chatid", "chat_id", "participant",
                         "phone_number", "jid", "wid", "owner", "connectedphone"})  # fmt: skip
_SECRET_KEY = re.compile(r"(?i)(apikey|api_key|token|secret|password|authorization|signature)")
_TIME_KEY = re.compile(r"(?i)(time|stamp|moment|date|_at$)")
#: A full number: 55 + DDD + 8 or 9 digits, or any 10-15 digits under a phone key.
_FULL_NUMBER = re.compile(r"(?<!\d)\+?\d{12,13}(?!\d)")
_ANY_NUMBER = re.compile(r"(?<!\d)\+?\d{10,15}(?!\d)")


def mask_payload(data: Any, key: str = "") -> Any:
    """A stored payload for display: keys, tokens and phone numbers masked (the stored row
    is unchanged; ``--json`` of ``inbox show`` is masked the same way)."""
    if isinstance(data, Mapping):
        return {k: mask_payload(v, str(k)) for k, v in data.items()}
    if isinstance(data, list):
        return [mask_payload(v, key) for v in data]
    phone_key = key.lower() in _PHONE_KEYS
    if isinstance(data, str):
        if _SECRET_KEY.search(key):
            return mask_secret(data)
        if _TIME_KEY.search(key) and not phone_key:
            return data
        pattern = _ANY_NUMBER if phone_key else _FULL_NUMBER
        return pattern.sub(lambda m: mask_phone(m.group()), data)
    if isinstance(data, int) and not isinstance(data, bool) and phone_key:
        return mask_phone(str(data)) if len(str(data)) >= 10 else data
    return data
