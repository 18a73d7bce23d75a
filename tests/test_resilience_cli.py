"""``julia circuits`` and ``julia ratelimit`` end to end on the real database and Redis."""

from __future__ import annotations

import json

import psycopg


def audit_rows(database_url: str) -> list[tuple[str, str, str | None, str | None]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT operador, acao, alvo, motivo FROM audit_log ORDER BY id"
        ).fetchall()


def test_circuits_open_status_history_reset(cli, database_url: str) -> None:  # type: ignore[no-untyped-def]
    r = cli("circuits", "open", "chip:12", "--motivo", "número em análise", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["transitions"][0]["to_state"] == "forced_open"
    r = cli("circuits", "status", "--json")
    assert r.exit_code == 0, r.output
    states = {b["name"]: (b["state"], b["backend"]) for b in json.loads(r.stdout)}
    assert states["chip:12"] == ("forced_open", "redis")
    assert states["evolution"] == ("closed", "redis")
    r = cli("circuits", "status")
    assert r.exit_code == 0 and "circuit breakers" in r.stdout
    r = cli("circuits", "reset", "chip:12", "--operador", "bia")
    assert r.exit_code == 0, r.output
    assert "forced_open → closed" in r.stdout
    r = cli("circuits", "history", "chip:12", "--hours", "1", "--json")
    hist = json.loads(r.stdout)
    assert [(h["from_state"], h["to_state"], h["operador"]) for h in hist] == [
        ("closed", "forced_open", "tester"),
        ("forced_open", "closed", "bia"),
    ]
    assert audit_rows(database_url) == [
        ("tester", "circuit.forced_open", "chip:12", "número em análise"),
        ("bia", "circuit.reset", "chip:12", "reset by operator"),
    ]


def test_circuits_bad_input_changes_nothing(cli, database_url: str) -> None:  # type: ignore[no-untyped-def]
    assert cli("circuits", "open", "evolution").exit_code == 2  # --motivo is required
    r = cli("circuits", "open", "Not A Name", "--motivo", "x")
    assert r.exit_code == 2 and "bad breaker name" in r.stderr
    r = cli("circuits", "open", "evolution", "--motivo", "  ")
    assert r.exit_code == 2
    assert audit_rows(database_url) == []


def test_ratelimit_override_and_status(cli, database_url: str) -> None:  # type: ignore[no-untyped-def]
    r = cli(
        "ratelimit", "override", "--telefone", "(11) 99999-8888", "--motivo", "pediu retorno",
        "--ate", "2099-01-01T18:00", "--json",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    ov = json.loads(r.stdout)
    assert (ov["telefone"], ov["operador"]) == ("+5511999998888", "tester")
    assert ov["ate"] == "2099-01-01T21:00:00+00:00"  # no zone given: São Paulo time
    r = cli("ratelimit", "status", "--telefone", "11999998888", "--json")
    assert r.exit_code == 0, r.output
    st = json.loads(r.stdout)
    assert st["usage"][0]["limit"] == "medico_daily" and st["usage"][0]["left"] == 3
    assert st["override"]["motivo"] == "pediu retorno"
    r = cli("ratelimit", "status", "--chip", "7")
    assert r.exit_code == 0 and "chip_hourly" in r.stdout
    assert audit_rows(database_url) == [
        ("tester", "ratelimit.override", "+5511999998888", "pediu retorno")
    ]


def test_ratelimit_bad_input_changes_nothing(cli, database_url: str) -> None:  # type: ignore[no-untyped-def]
    r = cli("ratelimit", "override", "--telefone", "123", "--motivo", "x")
    assert r.exit_code == 2 and "invalid phone" in r.stderr
    r = cli("ratelimit", "override", "--telefone", "11999998888", "--motivo", "x", "--ate", "ontem")
    assert r.exit_code == 2
    r = cli(
        "ratelimit", "override", "--telefone", "11999998888", "--motivo", "x", "--ate", "2001-01-01"
    )
    assert r.exit_code == 2 and "future" in r.stderr
    assert cli("ratelimit", "status").exit_code == 2
    assert audit_rows(database_url) == []
