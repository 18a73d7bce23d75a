"""CSV imports: read, validate every row, then write all-or-nothing.

A file with bad rows is rejected whole with every bad line and reason, and the
tables are left unchanged; ``skip_invalid`` imports the good rows and reports
the rest. Rows reach Postgres through COPY into a temporary staging table and
one set-based upsert, so 100,000 rows take seconds, not minutes.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from julia.core.errors import ImportRejected, InvalidInput, JuliaError, RowError

#: Called as ``progress(done, total)`` while a long file is validated and written.
Progress = Callable[[int, int], None]
T = TypeVar("T")


@dataclass
class ImportResult:
    """What an import did: rows inserted and updated, and the rows skipped with reasons."""

    path: str
    total: int
    inserted: int = 0
    updated: int = 0
    skipped: list[RowError] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "total": self.total,
            "inserted": self.inserted,
            "updated": self.updated,
            "skipped": [{"line": e.line, "reason": e.reason} for e in self.skipped],
        }


def read_csv(
    path: Path, *, required: set[str], optional: set[str]
) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header and ``(line, row)`` pairs; unknown or missing columns are an error."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            if not header:
                raise InvalidInput(f"{path}: the file is empty or has no header")
            unknown = [h for h in header if h not in required | optional]
            if unknown:
                allowed = ", ".join(sorted(required | optional))
                raise InvalidInput(
                    f"{path}: unknown column(s) {', '.join(unknown)} (allowed: {allowed})"
                )
            missing = sorted(required - set(header))
            if missing:
                raise InvalidInput(f"{path}: missing required column(s) {', '.join(missing)}")
            reader.fieldnames = header
            rows = []
            for row in reader:
                extra = row.pop(None, None)
                cleaned = {k: (v or "").strip() for k, v in row.items()}
                if extra:
                    cleaned["__extra__"] = "x"
                rows.append((reader.line_num, cleaned))
            return header, rows
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInput(f"{path}: cannot read the file: {exc}") from exc


def validate_rows(
    path: Path,
    rows: list[tuple[int, dict[str, str]]],
    parse: Callable[[dict[str, str]], T],
    *,
    key: Callable[[T], object] | None = None,
    skip_invalid: bool | None,
    progress: Progress | None = None,
) -> tuple[list[tuple[int, T]], list[RowError]]:
    """Parse every row; duplicates by ``key`` within the file are errors too.
    ``skip_invalid=None``: all or nothing, and the caller has no --skip-invalid to offer."""
    good: list[tuple[int, T]] = []
    errors: list[RowError] = []
    seen: dict[object, int] = {}
    total = len(rows)
    for i, (line, row) in enumerate(rows, 1):
        try:
            if row.pop("__extra__", None):
                raise InvalidInput("more values than columns")
            item = parse(row)
        except JuliaError as exc:
            errors.append(RowError(line, str(exc)))
            continue
        if key is not None:
            k = key(item)
            if k in seen:
                errors.append(RowError(line, f"duplicate of line {seen[k]}"))
                continue
            seen[k] = line
        good.append((line, item))
        if progress and i % 1000 == 0:
            progress(i, total)
    if errors and not skip_invalid:
        raise ImportRejected(str(path), errors, skippable=skip_invalid is not None)
    return good, errors


def chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def required(row: dict[str, str], column: str) -> str:
    value = row.get(column, "")
    if not value:
        raise InvalidInput(f"{column} is required")
    return value
