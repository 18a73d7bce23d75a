"""CSV imports: read, validate every row, then write all-or-nothing.

A file with bad rows is rejected whole with every bad line and reason, and the
tables are left unchanged; ``skip_invalid`` imports the good rows and reports
the rest. Rows reach Postgres through COPY into a temporary staging table and
one set-based upsert, so 100,000 rows take seconds, not minutes.

Every kind of file (doctors, shifts) is one :class:`Pipeline` run by
:func:`run_import`: its columns, how a row is parsed, what must be unique within the
file, its staging table, a query naming the rows that would break a table's
constraint or must not come back (so they are reported by line, never as an unexpected
error), and its upsert.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from psycopg import AsyncConnection

from julia.core import audit
from julia.core.app import App
from julia.core.errors import ImportRejected, InvalidInput, JuliaError, RowError

#: Called as ``progress(done, total)`` while a long file is validated and written.
Progress = Callable[[int, int], None]
T = TypeVar("T")

_ERROR = "__error__"  # a reason found while reading (a NUL byte, more values than columns)


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
    """Header and ``(line, row)`` pairs; unknown, missing or repeated columns are an error.

    A row holding a NUL byte (which no text column can store) or more values than
    columns is kept with its reason, so it is reported by line like any bad row."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: cannot read the file: {exc}") from exc
    nul_lines = {n for n, line in enumerate(text.split("\n"), 1) if "\x00" in line}
    try:
        reader = csv.DictReader(io.StringIO(text.replace("\x00", ""), newline=""))
        header = [h.strip() for h in (reader.fieldnames or [])]
        if not header:
            raise InvalidInput(f"{path}: the file is empty or has no header")
        if reader.line_num in nul_lines or 1 in nul_lines:
            raise InvalidInput(f"{path}: line 1 (the header) contains a NUL byte")
        repeated = sorted({h for h in header if header.count(h) > 1})
        if repeated:
            raise InvalidInput(f"{path}: column(s) {', '.join(repeated)} appear more than once")
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
        last = reader.line_num
        for row in reader:
            first, last = last + 1, reader.line_num
            extra = row.pop(None, None)
            cleaned = {k: (v or "").strip() for k, v in row.items()}
            if any(n in nul_lines for n in range(first, last + 1)):
                cleaned[_ERROR] = "contains a NUL byte"
            elif extra:
                cleaned[_ERROR] = "more values than columns"
            rows.append((last, cleaned))
        return header, rows
    except csv.Error as exc:
        raise InvalidInput(f"{path}: line {reader.line_num}: not valid CSV: {exc}") from exc


def validate_rows(
    path: Path,
    rows: list[tuple[int, dict[str, str]]],
    parse: Callable[[dict[str, str]], T],
    *,
    key: Callable[[T], object] | None = None,
    unique: Mapping[str, Callable[[T], object | None]] | None = None,
    skip_invalid: bool | None,
    progress: Progress | None = None,
) -> tuple[list[tuple[int, T]], list[RowError]]:
    """Parse every row; duplicates within the file are errors too: by ``key``, and by each
    of ``unique`` (name → key; a None key is not compared). A parser's unexpected
    exception is still a named line (``ValueError: ...``), never a failed import.
    ``skip_invalid=None``: all or nothing, and the caller has no --skip-invalid to offer."""
    good: list[tuple[int, T]] = []
    errors: list[RowError] = []
    checks: dict[str, Callable[[T], object | None]] = dict(unique or {})
    if key is not None:
        checks[""] = key
    seen: dict[str, dict[object, int]] = {name: {} for name in checks}
    total = len(rows)
    for i, (line, row) in enumerate(rows, 1):
        try:
            reason = row.pop(_ERROR, None)
            if reason:
                raise InvalidInput(reason)
            item = parse(row)
        except JuliaError as exc:
            errors.append(RowError(line, str(exc)))
            continue
        except (ArithmeticError, ValueError) as exc:  # a parser's gap, still this line's fault
            errors.append(RowError(line, f"{type(exc).__name__}: {exc}"))
            continue
        clash = _duplicate(item, checks, seen, line)
        if clash:
            errors.append(RowError(line, clash))
            continue
        good.append((line, item))
        if progress and i % 1000 == 0:
            progress(i, total)
    if errors and not skip_invalid:
        raise ImportRejected(str(path), errors, skippable=skip_invalid is not None)
    return good, errors


def _duplicate(
    item: T,
    checks: Mapping[str, Callable[[T], object | None]],
    seen: dict[str, dict[object, int]],
    line: int,
) -> str | None:
    keys = {name: check(item) for name, check in checks.items()}
    for name, k in keys.items():
        if k is not None and k in seen[name]:
            return f"duplicate {name + ' ' if name else ''}of line {seen[name][k]}".replace(
                "  ", " "
            )
    for name, k in keys.items():
        if k is not None:
            seen[name][k] = line
    return None


def chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def required(row: dict[str, str], column: str) -> str:
    value = row.get(column, "")
    if not value:
        raise InvalidInput(f"{column} is required")
    return value


@dataclass(frozen=True)
class Pipeline(Generic[T]):
    """How one kind of CSV is imported (see the module docstring)."""

    #: ``medicos`` → staging table ``_medicos_stage``, audit action ``medicos.import``.
    name: str
    required: set[str]
    optional: set[str]
    parse: Callable[[dict[str, str]], T]
    #: What must be unique within the file: name → key of a row (None: not compared).
    unique: Mapping[str, Callable[[T], object | None]]
    #: The staging table's columns after ``line int`` (``"telefone text, nome text"``).
    stage_columns: str
    #: A parsed row → its staged values, in ``stage_columns`` order.
    values: Callable[[T], tuple[Any, ...]]
    #: One statement over the stage returning ``inserted`` and ``updated`` counts.
    upsert: str
    #: Runs after the COPY, before the checks (create the specialties named...).
    prepare: Callable[[AsyncConnection[Any], list[T]], Awaitable[None]] | None = None
    #: A query over the stage returning ``(line, reason)`` of rows the upsert would
    #: break a constraint with (an id moved onto another record's phone...).
    conflicts: str | None = None
    #: Values bound in ``conflicts`` (the pepper of the erased-phone hash...).
    params: Callable[[App], Mapping[str, Any]] | None = None


async def run_import(
    app: App,
    pipeline: Pipeline[T],
    path: Path,
    *,
    skip_invalid: bool = False,
    actor: audit.Actor | None = None,
    progress: Progress | None = None,
) -> ImportResult:
    """Read, validate, stage, check and upsert one file, in one transaction."""
    _, rows = read_csv(path, required=pipeline.required, optional=pipeline.optional)
    good, errors = validate_rows(
        path,
        rows,
        pipeline.parse,
        unique=pipeline.unique,
        skip_invalid=skip_invalid,
        progress=progress,
    )
    result = ImportResult(path=str(path), total=len(rows), skipped=errors)
    now = app.clock.now()
    stage = f"_{pipeline.name}_stage"
    async with app.pool.connection() as conn, conn.transaction():
        await conn.execute(
            f"CREATE TEMP TABLE {stage} (line int, {pipeline.stage_columns}) ON COMMIT DROP"
        )
        async with conn.cursor().copy(f"COPY {stage} FROM STDIN") as copy:
            for i, (line, r) in enumerate(good, 1):
                await copy.write_row((line, *pipeline.values(r)))
                if progress and i % 5000 == 0:
                    progress(i, len(good))
        if pipeline.prepare is not None:
            await pipeline.prepare(conn, [r for _, r in good])
        if pipeline.conflicts is not None:
            bound = dict(pipeline.params(app)) if pipeline.params is not None else None
            cur = await conn.execute(pipeline.conflicts, bound)
            clashes = [RowError(r["line"], r["reason"]) for r in await cur.fetchall()]
            if clashes:
                errors.extend(clashes)
                errors.sort(key=lambda e: e.line)
                if not skip_invalid:
                    raise ImportRejected(str(path), errors)  # rolls the stage back
                await conn.execute(
                    f"DELETE FROM {stage} WHERE line = ANY(%s)", ([e.line for e in clashes],)
                )
        cur = await conn.execute(pipeline.upsert, {"now": now})
        counts = await cur.fetchone()
        assert counts is not None
        result.inserted, result.updated = counts["inserted"], counts["updated"]
        await audit.record(
            conn,
            now,
            actor or audit.Actor.of(app),
            f"{pipeline.name}.import",
            alvo=path.name,
            detalhes={k: v for k, v in result.as_dict().items() if k != "skipped"}
            | {"skipped": len(errors)},
        )
    if progress:
        progress(len(good), len(good))
    return result
