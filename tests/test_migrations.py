from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from julia.core import migrations
from julia.core.errors import ChecksumMismatch, MigrationFileError


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    return {r[0] for r in rows}


def _copy_migrations(tmp_path: Path) -> Path:
    target = tmp_path / "migrations"
    shutil.copytree(migrations.default_directory(), target)
    return target


async def test_migrate_applies_everything_once(fresh_db: str) -> None:
    names = [m.name for m in migrations.discover()]
    assert await migrations.migrate(fresh_db) == names
    assert await migrations.migrate(fresh_db) == []
    st = await migrations.status(fresh_db)
    assert [m.name for m in st.applied] == names and st.pending == []
    assert {
        "medicos",
        "vagas",
        "conversas",
        "interacoes",
        "business_events",
        "audit_log",
        "app_settings",
        "especialidades",
        "hospitais",
        "schema_migrations",
    } <= _tables(fresh_db)


async def test_status_before_migrating_lists_everything_pending(fresh_db: str) -> None:
    st = await migrations.status(fresh_db)
    assert st.applied == [] and st.pending == [m.name for m in migrations.discover()]


async def test_changed_file_is_an_error_naming_it_and_applies_nothing(
    fresh_db: str, tmp_path: Path
) -> None:
    folder = _copy_migrations(tmp_path)
    await migrations.migrate(fresh_db, folder)
    first = sorted(folder.glob("0001_*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited after release\n")
    (folder / "9000_later.sql").write_text("CREATE TABLE later_table (id int);")
    with pytest.raises(ChecksumMismatch, match=first.name):
        await migrations.migrate(fresh_db, folder)
    assert "later_table" not in _tables(fresh_db)
    st = await migrations.status(fresh_db, folder)
    assert [m.name for m in st.applied if m.changed] == [first.stem]
    assert st.pending == ["9000_later"]


async def test_failing_migration_rolls_back_alone(fresh_db: str, tmp_path: Path) -> None:
    folder = _copy_migrations(tmp_path)
    (folder / "9000_good.sql").write_text("CREATE TABLE good_table (id int);")
    (folder / "9001_bad.sql").write_text("CREATE TABLE half_done (id int); SELECT nope();")
    with pytest.raises(psycopg.errors.UndefinedFunction):
        await migrations.migrate(fresh_db, folder)
    tables = _tables(fresh_db)
    assert "good_table" in tables and "half_done" not in tables
    assert (await migrations.status(fresh_db, folder)).pending == ["9001_bad"]


@pytest.mark.parametrize("bad", ["1_short.sql", "0002-dash.sql", "0003_UPPER.sql"])
def test_badly_named_files_are_rejected(tmp_path: Path, bad: str) -> None:
    (tmp_path / "0001_ok.sql").write_text("SELECT 1;")
    (tmp_path / bad).write_text("SELECT 1;")
    with pytest.raises(MigrationFileError, match=bad):
        migrations.discover(tmp_path)


def test_duplicate_numbers_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0001_b.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationFileError, match="already used"):
        migrations.discover(tmp_path)


def test_bundled_migrations_are_contiguous() -> None:
    numbers = [int(m.name[:4]) for m in migrations.discover()]
    assert numbers == list(range(1, len(numbers) + 1))


def test_two_concurrent_migrators_apply_each_file_once(
    fresh_db: str, tmp_path: Path, env: dict[str, str]
) -> None:
    """Two real processes race; the advisory lock makes one wait for the other."""
    folder = _copy_migrations(tmp_path)
    # A slow migration keeps the first migrator inside the lock while the second arrives.
    (folder / "9000_slow.sql").write_text(
        "SELECT pg_sleep(1); CREATE TABLE slow_marker (id int); INSERT INTO slow_marker VALUES (1);"
    )
    run_env = env | {"JULIA_DATABASE_URL": fresh_db, "JULIA_MIGRATIONS_DIR": str(folder)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "julia_cli", "db", "migrate", "--json"],
            env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(2)
    ]  # fmt: skip
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    import json

    applied = [json.loads(out)["applied"] for out, _ in outputs]
    expected = [m.name for m in migrations.discover(folder)]
    assert sorted(applied, key=len) == [[], expected]
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT count(*) FROM slow_marker").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (len(expected),)


async def test_interacoes_partitions_are_created_idempotently_and_nothing_is_lost(
    database_url: str,
) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute("SELECT julia_create_interacoes_partitions('2031-01-15', 3)")
        assert (await cur.fetchone()) == (3,)
        cur = await conn.execute("SELECT julia_create_interacoes_partitions('2031-01-01', 3)")
        assert (await cur.fetchone()) == (0,)
        await conn.execute(
            "INSERT INTO interacoes (conversa_id, medico_id, direcao, conteudo, created_at) VALUES"
            " (1, 1, 'entrada', 'fev', '2031-02-10'), (1, 1, 'entrada', 'far', '2040-01-01')"
        )
        cur = await conn.execute(
            "SELECT tableoid::regclass::text, conteudo FROM interacoes ORDER BY created_at"
        )
        assert await cur.fetchall() == [
            ("interacoes_2031_02", "fev"),
            ("interacoes_default", "far"),
        ]


def test_migrations_are_runnable_with_asyncio_run(fresh_db: str) -> None:
    assert asyncio.run(migrations.migrate(fresh_db))
