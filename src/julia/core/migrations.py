"""Forward-only plain-SQL migrations: ``migrations/NNNN_name.sql``.

``migrate`` takes a Postgres advisory lock, so two migrators at once apply each
file once (the second waits, then finds nothing pending). Each file runs in its
own transaction and is recorded in ``schema_migrations`` with its sha256. A file
changed after it was applied stops everything before anything is applied.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

import julia
from julia.core.errors import ChecksumMismatch, MigrationFileError, StorageError

#: Arbitrary constant: the advisory lock key every Júlia migrator takes.
LOCK_KEY = 0x4A554C4941  # "JULIA"
NAME_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name        text PRIMARY KEY,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    name: str
    path: Path
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True)
class AppliedMigration:
    name: str
    checksum: str
    applied_at: datetime
    changed: bool


@dataclass(frozen=True)
class MigrationStatus:
    applied: list[AppliedMigration]
    pending: list[str]


def default_directory() -> Path:
    """The bundled migrations: inside the wheel, or the repository's top-level folder."""

    here = Path(julia.__file__).resolve().parent
    for candidate in (here / "_migrations", here.parents[1] / "migrations"):
        if candidate.is_dir():
            return candidate
    raise MigrationFileError("no migrations folder found; set JULIA_MIGRATIONS_DIR")


def discover(directory: Path | None = None) -> list[Migration]:
    """The migration files in order; a badly named or duplicate number is an error."""
    directory = directory or default_directory()
    found: dict[str, Migration] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix != ".sql":
            continue
        match = NAME_RE.match(path.name)
        if not match:
            raise MigrationFileError(f"{path.name}: migration files are named NNNN_name.sql")
        number = match.group(1)
        if number in found:
            raise MigrationFileError(
                f"{path.name}: number {number} is already used by {found[number].name}"
            )
        found[number] = Migration(path.stem, path, path.read_text(encoding="utf-8"))
    return [found[k] for k in sorted(found)]


async def _connect(url: str) -> psycopg.AsyncConnection[dict[str, Any]]:
    try:
        return await psycopg.AsyncConnection.connect(
            url, autocommit=True, row_factory=dict_row, prepare_threshold=None
        )
    except psycopg.OperationalError as exc:
        raise StorageError(f"cannot connect to Postgres: {exc}") from exc


async def _applied(conn: psycopg.AsyncConnection[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    cur = await conn.execute("SELECT to_regclass('schema_migrations') AS t")
    row = await cur.fetchone()
    if not row or row["t"] is None:
        return {}
    cur = await conn.execute("SELECT name, checksum, applied_at FROM schema_migrations")
    return {r["name"]: r for r in await cur.fetchall()}


async def status(url: str, directory: Path | None = None) -> MigrationStatus:
    """Applied migrations (flagging changed files) and the pending ones."""
    files = {m.name: m for m in discover(directory)}
    conn = await _connect(url)
    async with conn:
        applied = await _applied(conn)
    return MigrationStatus(
        applied=[
            AppliedMigration(
                name=name,
                checksum=row["checksum"],
                applied_at=row["applied_at"],
                changed=name in files and files[name].checksum != row["checksum"],
            )
            for name, row in sorted(applied.items())
        ],
        pending=[name for name in files if name not in applied],
    )


async def migrate(url: str, directory: Path | None = None) -> list[str]:
    """Apply pending migrations under the advisory lock; returns the names applied."""
    migrations = discover(directory)
    conn = await _connect(url)
    async with conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            await conn.execute(_CREATE_TABLE)
            applied = await _applied(conn)
            for m in migrations:
                if m.name in applied and applied[m.name]["checksum"] != m.checksum:
                    raise ChecksumMismatch(m.path.name)
            done: list[str] = []
            for m in migrations:
                if m.name in applied:
                    continue
                async with conn.transaction():
                    await conn.execute(m.sql.encode())  # several statements: simple protocol
                    await conn.execute(
                        "INSERT INTO schema_migrations (name, checksum) VALUES (%s, %s)",
                        (m.name, m.checksum),
                    )
                done.append(m.name)
            return done
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
