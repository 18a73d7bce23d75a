from __future__ import annotations

import json
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_version(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("--version")
    assert result.exit_code == 0 and result.stdout.startswith("julia ")


def test_info_json_contract(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("info", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) >= {"version", "database", "redis", "migrations"}
    assert data["database"]["embedded"] is False and data["redis"]["embedded"] is False
    assert data["migrations"]["pending"] == [] and data["migrations"]["applied"]


def test_db_migrate_twice_and_status_json(cli) -> None:  # type: ignore[no-untyped-def]
    assert cli("db", "migrate").exit_code == 0
    result = cli("db", "status", "--json")
    data = json.loads(result.stdout)
    assert data["pending"] == [] and all(not m["changed"] for m in data["applied"])


def test_import_list_optout_round_trip(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("medicos", "import", str(EXAMPLES / "medicos.csv"), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["inserted"] == 5
    assert cli("medicos", "optout", "31977776666", "--motivo", "pediu").exit_code == 0
    rows = json.loads(cli("medicos", "list", "--json").stdout)
    assert {r["telefone"]: r["opted_out"] for r in rows}["+5531977776666"] is True
    assert {"telefone", "nome", "opted_out"} <= set(rows[0])
    assert cli("vagas", "import", str(EXAMPLES / "vagas.csv")).exit_code == 0
    vagas = json.loads(cli("vagas", "list", "--status", "aberta", "--json").stdout)
    assert len(vagas) == 5 and vagas[0]["status"] == "aberta"


def test_rejected_import_prints_one_line_and_exits_non_zero(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("medicos", "import", str(EXAMPLES / "medicos_invalid.csv"))
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "line 3" in lines[0] and "Traceback" not in result.stderr
    assert json.loads(cli("medicos", "list", "--json").stdout) == []


def test_bad_input_is_one_clear_line(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cases = [
        (("medicos", "optout", "123", "--motivo", "x"), 2, "invalid phone"),
        (("medicos", "optout", "11999990000", "--motivo", "x"), 4, "no doctor"),
        (("vagas", "list", "--status", "bogus"), 2, "not one of"),
        (("medicos", "import", str(tmp_path / "missing.csv")), 2, "cannot read"),
    ]
    for args, code, text in cases:
        result = cli(*args)
        assert result.exit_code == code, (args, result.output)
        assert text in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_invalid_setting_is_a_config_error(cli, env) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from julia_cli.main import app

    result = CliRunner().invoke(app, ["info"], env=env | {"JULIA_DB_POOL_MAX": "zero"})
    assert result.exit_code == 78
    assert "JULIA_DB_POOL_MAX" in result.stderr


def test_config_show_masks_secrets(cli, env) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from julia_cli.main import app

    secret_env = env | {"JULIA_DATABASE_URL": "postgresql://u:hunter2secret@db/x"}
    result = CliRunner().invoke(app, ["config", "show", "--json"], env=secret_env)
    assert result.exit_code == 0
    assert "hunter2secret" not in result.stdout
    assert json.loads(result.stdout)["database_url"] == "postgresql://u:****@db/x"


def test_operator_action_records_who_acted(cli, env, database_url) -> None:  # type: ignore[no-untyped-def]
    import psycopg

    cli("medicos", "import", str(EXAMPLES / "medicos.csv"), "--operador", "maria")
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT operador, acao, alvo FROM audit_log").fetchone()
    assert row == ("maria", "medicos.import", "medicos.csv")
